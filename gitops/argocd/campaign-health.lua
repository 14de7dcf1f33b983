-- Argo CD health of a DeNASCampaign (denas.io/v1alpha1).
-- Install: argocd-cm key resource.customizations.health.denas.io_DeNASCampaign (gitops/argocd/kustomization.yaml).
--   Invalid=True    -> Degraded     (the spec names the field to fix; no cell is touched)
--   Degraded=True   -> Degraded     (a cell's DeNASJob failed: its message)
--   Succeeded=True  -> Healthy      (every cell succeeded)
--   anything else   -> Progressing  (cells done/total)
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
  local text = c.reason or c.type
  if c.message ~= nil and c.message ~= "" then
    text = text .. ": " .. c.message
  end
  return text
end

if obj.status == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the DeNAS operator to pick the campaign up"
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
for _, type_ in ipairs({"Invalid", "Degraded"}) do
  if is_true(conditions, type_) then
    hs.status = "Degraded"
    hs.message = describe(condition(conditions, type_))
    return hs
  end
end
if is_true(conditions, "Succeeded") then
  hs.status = "Healthy"
  hs.message = describe(condition(conditions, "Succeeded"))
  return hs
end

hs.status = "Progressing"
local done = ""
if status.progress ~= nil and status.progress.summary ~= nil then
  done = "cells succeeded " .. status.progress.summary
end
local progressing = condition(conditions, "Progressing")
if progressing ~= nil then
  hs.message = describe(progressing) .. (done ~= "" and ("; " .. done) or "")
else
  hs.message = done ~= "" and done or "Waiting for the operator"
end
return hs
