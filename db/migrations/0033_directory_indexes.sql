-- The explorer's device directory pages by id through the listed devices (verified and not
-- retired), filtered by model, region or both. An index per filter, on the listed devices
-- only and in id order, lets a page read its rows in order and stop at the page's end instead
-- of sorting every match (at a million devices, tens of thousands per model and region).
CREATE INDEX devices_listed_model_region ON devices(gpu_model, region, id)
    WHERE status IN ('available', 'busy', 'offline', 'maintenance', 'suspended');
CREATE INDEX devices_listed_model ON devices(gpu_model, id)
    WHERE status IN ('available', 'busy', 'offline', 'maintenance', 'suspended');
CREATE INDEX devices_listed_region ON devices(region, id)
    WHERE status IN ('available', 'busy', 'offline', 'maintenance', 'suspended');
CREATE INDEX devices_listed_status ON devices(status, id);
