-- Argo CD health for VeloFlux objects (Plan, Tenant, Route, DedicatedInstance).
-- Progressing until the operator has observed the latest generation and
-- reported Ready; Healthy when Ready is True; Degraded when Ready is False
-- for a reason other than Pending (QuotaExceeded, HostConflict, ...).
hs = {}
if obj.status == nil or obj.status.conditions == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the VeloFlux operator"
  return hs
end
if obj.metadata ~= nil and obj.metadata.generation ~= nil and obj.status.observedGeneration ~= nil
    and obj.status.observedGeneration < obj.metadata.generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. obj.metadata.generation
  return hs
end
for _, condition in ipairs(obj.status.conditions) do
  if condition.type == "Ready" then
    local detail = condition.reason
    if condition.message ~= nil and condition.message ~= "" then
      detail = condition.reason .. ": " .. condition.message
    end
    if condition.status == "True" then
      hs.status = "Healthy"
    elseif condition.status == "False" and condition.reason ~= "Pending" then
      hs.status = "Degraded"
    else
      hs.status = "Progressing"
    end
    hs.message = detail
    return hs
  end
end
hs.status = "Progressing"
hs.message = "No Ready condition yet"
return hs
