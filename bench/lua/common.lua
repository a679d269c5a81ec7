-- Shared by the scenario scripts: one token pool per wrk thread, loaded from a file.
local common = {}

function common.load(path)
  local items = {}
  local file = assert(io.open(path, "r"))
  for line in file:lines() do
    if #line > 0 then items[#items + 1] = line end
  end
  file:close()
  return items
end

return common
