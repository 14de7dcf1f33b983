-- Argo CD health of a DeNASJob (denas.io/v1alpha1).
-- Install: argocd-cm key resource.customizations.health.denas.io_DeNASJob (gitops/argocd/kustomization.yaml).
--   Failed=True     -> Degraded     (reason: message of the Failed condition)
--   Succeeded=True  -> Healthy
--   Suspended=True  -> Suspended
--   anything else   -> Progressing  (message of the most telling condition)
-- Conditions are the API; status.phase is only read when an operator wrote no conditions.
local hs = {}

local function condition(conditions, type_)
  if conditions == nil then
    return nil
  end
  for _, c in ipairs(conditions) do
    if c.type == type_ then
      return c
    end
  end
  return nil
end

local function is_true(conditions, type_)
  local c = condition(conditions, type_)
  return c ~= nil and c.status == "True"
end

local function describe(c)
  if c == nil then
    return ""
  end
  local text = c.reason or c.type
  if c.message ~= nil and c.message ~= "" then
    text = text .. ": " .. c.message
  end
  return text
end

if obj.status == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the DeNAS operator to pick the job up"
  return hs
end

local status = obj.status
local generation = obj.metadata and obj.metadata.generation
if generation ~= nil and status.observedGeneration ~= nil and status.observedGeneration < generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. tostring(generation)
  return hs
end

local conditions = status.conditions
if conditions == nil or #conditions == 0 then
  local phase = status.phase
  if phase == "Failed" then
    hs.status = "Degraded"
  elseif phase == "Succeeded" then
    hs.status = "Healthy"
  elseif phase == "Suspended" then
    hs.status = "Suspended"
  else
    hs.status = "Progressing"
  end
  hs.message = "Phase: " .. tostring(phase or "Pending")
  return hs
end

if is_true(conditions, "Failed") then
  hs.status = "Degraded"
  hs.message = describe(condition(conditions, "Failed"))
  return hs
end
if is_true(conditions, "Succeeded") then
  hs.status = "Healthy"
  hs.message = describe(condition(conditions, "Succeeded"))
  return hs
end
if is_true(conditions, "Suspended") then
  hs.status = "Suspended"
  hs.message = describe(condition(conditions, "Suspended"))
  return hs
end

hs.status = "Progressing"
-- Blocked (e.g. a missing PersistentVolumeClaim) says more than "pods pending".
for _, type_ in ipairs({"Blocked", "TrainingRunning", "SearchSucceeded", "SearchRunning"}) do
  if is_true(conditions, type_) then
    hs.message = describe(condition(conditions, type_))
    return hs
  end
end
hs.message = describe(conditions[#conditions])
return hs
