-- wrk: GET 256 rows as RUNS scattered runs of 256/RUNS consecutive ids, random per request (seeded).
local rows = tonumber(os.getenv("ROWS") or "50000")
local runs = tonumber(os.getenv("RUNS") or "16")
local per = math.floor(256 / runs)
math.randomseed(tonumber(os.getenv("SEED") or "42"))
request = function()
  local ids = {}
  for r = 1, runs do
    local s = math.random(0, rows - per - 1)
    for i = 0, per - 1 do ids[#ids + 1] = s + i end
  end
  return wrk.format("GET", "/v1/rows?format=bin&ids=" .. table.concat(ids, ","))
end
