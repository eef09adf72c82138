-- The request cycle (点单 -> 制单/派单 -> 接单, issue 26 item 2).
--
-- `service_menu`: what a center's stations can offer residents: a lecture topic (with its
-- speaker) or a film from the library (kind 'film_class'). Center admins maintain it;
-- `retired` hides an item from the menu without breaking requests that point at it.
--
-- `service_requests`: a resident's request at a station for a menu item. `device_hash` is
-- the SHA-256 of the device id (the `fy_dev` cookie). `phone` is kept only when the
-- resident ticked consent, shown only to administrators in scope, and blanked 90 days after
-- the request closed (`closed_at`). `status`: requested | scheduled (turned into planned
-- item `planned_item_id` on `assigned_station_id`) | accepted | declined (with
-- `decline_reason`) | done (the item's session ended) | cancelled.
-- Times are unix milliseconds (UTC).
CREATE TABLE service_menu (
    id INTEGER PRIMARY KEY,
    center_id BIGINT NOT NULL REFERENCES centers(id),
    kind TEXT NOT NULL CHECK (kind IN ('lecture', 'film_class')),
    title TEXT NOT NULL,
    speaker TEXT NOT NULL DEFAULT '',
    film_id BIGINT REFERENCES films(id),
    retired BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL
);
CREATE INDEX service_menu_center ON service_menu(center_id);

CREATE TABLE service_requests (
    id INTEGER PRIMARY KEY,
    station_id BIGINT NOT NULL REFERENCES stations(id),
    menu_id BIGINT NOT NULL REFERENCES service_menu(id),
    period TEXT NOT NULL DEFAULT '',
    nickname TEXT NOT NULL,
    phone TEXT,
    device_hash TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'requested',
    decline_reason TEXT NOT NULL DEFAULT '',
    planned_item_id BIGINT REFERENCES planned_items(id),
    assigned_station_id BIGINT REFERENCES stations(id),
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    closed_at BIGINT
);
CREATE INDEX service_requests_station ON service_requests(station_id, status);
CREATE INDEX service_requests_device ON service_requests(device_hash, station_id);
CREATE INDEX service_requests_item ON service_requests(planned_item_id);
