// Copy buttons for the one-time key value (loaded from the app: the CSP forbids inline scripts).
"use strict";
document.addEventListener("click", function (event) {
  var button = event.target.closest("[data-copy-target]");
  if (!button) return;
  var input = document.getElementById(button.getAttribute("data-copy-target"));
  var status = document.querySelector(".copy-status");
  function done(message) { if (status) status.textContent = message; }
  function fallback() {
    input.select();
    try { done(document.execCommand("copy") ? "Copied." : "Select the value and copy it."); }
    catch (e) { done("Select the value and copy it."); }
  }
  if (navigator.clipboard && window.isSecureContext) {
    navigator.clipboard.writeText(input.value).then(function () { done("Copied."); }, fallback);
  } else {
    fallback();
  }
});
