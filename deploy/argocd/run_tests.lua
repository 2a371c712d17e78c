-- Runs an Argo CD health check script against JSON test cases and prints one line per
-- case, then "N passed, M failed". Exits 1 when a case fails, 2 on a usage error.
--
--   lua5.1 run_tests.lua health.lua testdata/*.json
--
-- Each case file contains {"object": {...}, "expected": {"status": "...",
-- "message_contains": "..."}}; message_contains is optional. The script runs as Argo CD
-- runs it: a chunk with the object in the global `obj`, returning a table with `status`
-- and `message`.
local cjson = require("cjson")

local HEALTH_STATUSES = {
  Healthy = true,
  Progressing = true,
  Degraded = true,
  Suspended = true,
  Missing = true,
  Unknown = true,
}

local function read_file(path)
  local file, err = io.open(path, "rb")
  if file == nil then
    return nil, err
  end
  local text = file:read("*a")
  file:close()
  return text
end

-- Removes JSON nulls, because Argo CD passes a null field to the script as nil while
-- cjson decodes it as the sentinel cjson.null.
local function strip_nulls(value)
  if type(value) ~= "table" then
    return value
  end
  local copy = {}
  for key, item in pairs(value) do
    if item ~= cjson.null then
      copy[key] = strip_nulls(item)
    end
  end
  return copy
end

local function case_name(path)
  return (path:gsub("^.*/", ""):gsub("%.json$", ""))
end

-- Loads and checks one case file. Returns object and expected, or nil and an error.
local function load_case(path)
  local text, read_err = read_file(path)
  if text == nil then
    return nil, "cannot read the case file: " .. tostring(read_err)
  end
  local decoded_ok, case = pcall(cjson.decode, text)
  if not decoded_ok then
    return nil, "invalid JSON: " .. tostring(case)
  end
  case = strip_nulls(case)
  if type(case.object) ~= "table" then
    return nil, "the case has no \"object\""
  end
  local expected = case.expected
  if type(expected) ~= "table" or type(expected.status) ~= "string" then
    return nil, "the case has no \"expected.status\""
  end
  if not HEALTH_STATUSES[expected.status] then
    return nil, "expected.status " .. expected.status .. " is not an Argo CD health status"
  end
  if expected.message_contains ~= nil and type(expected.message_contains) ~= "string" then
    return nil, "expected.message_contains must be a string"
  end
  return case.object, expected
end

-- Runs the check on one object in a fresh environment, so globals set by one case do
-- not leak into the next. Returns the health table, or nil and an error.
local function run_check(check, object)
  local env = setmetatable({ obj = object }, { __index = _G })
  setfenv(check, env)
  local ran_ok, hs = pcall(check)
  if not ran_ok then
    return nil, "the script raised an error: " .. tostring(hs)
  end
  if type(hs) ~= "table" then
    return nil, "the script returned " .. type(hs) .. ", expected a table"
  end
  if not HEALTH_STATUSES[hs.status] then
    return nil, "the script returned status " .. tostring(hs.status) .. ", not an Argo CD health status"
  end
  if type(hs.message) ~= "string" then
    return nil, "the script returned message " .. tostring(hs.message) .. ", expected a string"
  end
  return hs
end

-- Returns true and a summary, or false and what failed.
local function run_case(check, path)
  local object, expected = load_case(path)
  if object == nil then
    return false, expected
  end
  local hs, err = run_check(check, object)
  if hs == nil then
    return false, err
  end
  local got = hs.status .. ": " .. hs.message
  if hs.status ~= expected.status then
    return false, "expected status " .. expected.status .. ", got " .. got
  end
  local fragment = expected.message_contains
  if fragment ~= nil and not hs.message:find(fragment, 1, true) then
    return false, string.format("expected the message to contain %q, got %s", fragment, got)
  end
  return true, got
end

local function main(args)
  local script_path = args[1]
  if script_path == nil or args[2] == nil then
    io.stderr:write("usage: lua5.1 run_tests.lua HEALTH_SCRIPT CASE.json...\n")
    os.exit(2)
  end
  local check, load_err = loadfile(script_path)
  if check == nil then
    io.stderr:write("cannot load " .. script_path .. ": " .. tostring(load_err) .. "\n")
    os.exit(2)
  end

  local passed, failed = 0, 0
  for i = 2, #args do
    local ok, detail = run_case(check, args[i])
    if ok then
      passed = passed + 1
      print(string.format("PASS %s (%s)", case_name(args[i]), detail))
    else
      failed = failed + 1
      print(string.format("FAIL %s: %s", case_name(args[i]), detail))
    end
  end
  print(string.format("%d passed, %d failed", passed, failed))
  if failed > 0 then
    os.exit(1)
  end
end

main(arg)
