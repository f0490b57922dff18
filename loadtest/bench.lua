-- One wrk script for every workload and peer, set by environment variables:
--   PEER embd|nginx|flask, MODE row|slice|gather, FMT bin|json (row), N rows (slice/gather), ROWS, DIM, SEED,
--   DTYPE f16|bf16 (embd's slice/gather: ?dtype=).
-- Requests are built in init() from a seeded generator (one stream per wrk thread) and cycled, so that wrk
-- spends its time on the wire, not in Lua.
local peer = os.getenv("PEER") or "embd"
local mode = os.getenv("MODE") or "row"
local fmt = os.getenv("FMT") or "bin"
local n = tonumber(os.getenv("N") or "1")
local rows = tonumber(os.getenv("ROWS") or "200000")
local dim = tonumber(os.getenv("DIM") or "768")
local seed = tonumber(os.getenv("SEED") or "1")
-- DTYPE f16|bf16: embd converts the rows (?dtype=); empty: the matrix's own f32.
local dtype = os.getenv("DTYPE") or ""
local dtype_arg = dtype ~= "" and ("&dtype=" .. dtype) or ""
local row_bytes = dim * 4
-- Each wrk thread's init() runs on wrk's main thread, one thread after the other, before the timed run: a thread
-- already running waits (hammering the server with half the connections, its latencies counted) while the next
-- one builds its pool. So the pool is kept to 256k ids a thread whatever the batch size (512 requests up to 512
-- ids, 64 of 4,096), and ids are packed from a table of byte strings: ~50 ms, not seconds, of Lua per thread.
local pool_size = math.max(16, math.min(512, math.floor(262144 / n)))
local threads = {}
local pool, cursor = {}, 0
local byte = {}
for i = 0, 255 do byte[i] = string.char(i) end
local zeros5 = string.rep("\0", 5)

local function int64le(v)
  if v < 16777216 then
    return byte[v % 256] .. byte[math.floor(v / 256) % 256] .. byte[math.floor(v / 65536)] .. zeros5
  end
  local b = {}
  for i = 1, 8 do
    b[i] = byte[v % 256]
    v = math.floor(v / 256)
  end
  return table.concat(b)
end

local function build()
  if mode == "row" then
    local id = math.random(0, rows - 1)
    if peer == "embd" then
      return wrk.format("GET", "/v1/rows/" .. id .. (fmt == "bin" and "?format=bin" or ""))
    elseif peer == "nginx" then
      local a = id * row_bytes
      return wrk.format("GET", "/matrix.raw", {Range = "bytes=" .. a .. "-" .. (a + row_bytes - 1)})
    else
      return wrk.format("GET", "/rows/" .. id .. (fmt == "bin" and "?format=bin" or ""))
    end
  elseif mode == "slice" then
    local a = math.random(0, rows - n)
    if peer == "embd" then
      return wrk.format("GET", "/v1/rows?format=bin&start=" .. a .. "&stop=" .. (a + n) .. dtype_arg)
    elseif peer == "nginx" then
      local s = a * row_bytes
      return wrk.format("GET", "/matrix.raw", {Range = "bytes=" .. s .. "-" .. (s + n * row_bytes - 1)})
    else
      return wrk.format("GET", "/slice?start=" .. a .. "&stop=" .. (a + n))
    end
  else
    local ids = {}
    for i = 1, n do ids[i] = int64le(math.random(0, rows - 1)) end
    local body = table.concat(ids)
    local hdr = {["Content-Type"] = "application/octet-stream"}
    if peer == "embd" then
      return wrk.format("POST", "/v1/rows?format=bin&id_dtype=int64" .. dtype_arg, hdr, body)
    else
      return wrk.format("POST", "/gather", hdr, body)
    end
  end
end

function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  math.randomseed(seed * 1000 + (tid or 1))
  for i = 1, pool_size do pool[i] = build() end
end

function request()
  cursor = cursor % pool_size + 1
  return pool[cursor]
end

function done(summary, latency, requests)
  io.write(string.format("RESULT duration_us=%d requests=%d bytes=%d errors_status=%d errors_other=%d p50_us=%d p99_us=%d max_us=%d\n", summary.duration,
    summary.requests, summary.bytes, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end
