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

-- wrk's setup(): numbers the threads 1..N (each thread's `id`), for sharing out work by thread.
local counter = 0
function common.number_thread(thread)
  counter = counter + 1
  thread:set("id", counter)
end

return common
