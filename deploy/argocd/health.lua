-- Argo CD health check for sklm.dev/SklmRestore, installed as
-- resource.customizations.health.sklm.dev_SklmRestore in the argocd-cm ConfigMap.
-- Argo CD runs it with the live object in `obj` and reads `status` and `message` from
-- the returned table. Written for Lua 5.1, which Argo CD's interpreter implements.
--
--   Healthy      Ready=True, computed from the object's current generation
--   Degraded     Stalled=True: the restore failed, or an error needs a person
--   Progressing  no status yet, a status from an older generation, Reconciling=True,
--                and anything else
local hs = {}

local function find_condition(conditions, condition_type)
  if type(conditions) ~= "table" then
    return nil
  end
  for _, condition in ipairs(conditions) do
    if condition.type == condition_type then
      return condition
    end
  end
  return nil
end

-- Ready's message, or the fallback when Ready is missing or has an empty message.
local function ready_message(ready, fallback)
  if ready ~= nil and type(ready.message) == "string" and ready.message ~= "" then
    return ready.message
  end
  return fallback
end

local generation = nil
if obj.metadata ~= nil then
  generation = obj.metadata.generation
end
local status = obj.status

if status == nil or (status.phase == nil and status.conditions == nil) then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to report a status"
  return hs
end

-- A status written for an older spec says nothing about the current one.
if generation ~= nil and status.observedGeneration ~= nil and status.observedGeneration < generation then
  hs.status = "Progressing"
  hs.message = string.format(
    "Waiting for the operator to observe generation %s (status is for generation %s)",
    tostring(generation),
    tostring(status.observedGeneration)
  )
  return hs
end

local ready = find_condition(status.conditions, "Ready")
local reconciling = find_condition(status.conditions, "Reconciling")
local stalled = find_condition(status.conditions, "Stalled")
local phase = status.phase or "Pending"

if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = ready_message(ready, stalled.message or stalled.reason or "Stalled")
  return hs
end

if ready ~= nil and ready.status == "True" then
  -- The condition's own observedGeneration wins over the status-wide one.
  local observed = ready.observedGeneration
  if observed == nil then
    observed = status.observedGeneration
  end
  if generation ~= nil and observed == generation then
    hs.status = "Healthy"
    hs.message = ready_message(ready, phase)
    return hs
  end
  hs.status = "Progressing"
  hs.message = string.format(
    "Ready, but not yet for generation %s (observed generation %s)",
    tostring(generation),
    tostring(observed)
  )
  return hs
end

if reconciling ~= nil and reconciling.status == "True" then
  hs.status = "Progressing"
  hs.message = phase .. ": " .. ready_message(ready, reconciling.reason or "reconciling")
  return hs
end

hs.status = "Progressing"
hs.message = phase .. ": " .. ready_message(ready, "no Ready condition yet")
return hs
