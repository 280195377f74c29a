-- Holds (issue 17): a booking made with "hold": true is HELD until `expires_at`, then EXPIRED unless it was
-- confirmed (CONFIRMED, with the payment reference) first. From `expires_at` on, a PENDING or HELD booking
-- holds nothing, whether or not anything has written EXPIRED yet: every write that takes seats first expires
-- the lapsed holders of those seats in its own transaction (adapters/mysql.py), and the sweeper settles the
-- rest. `expires_at` is UTC.
-- depends: 0003.booking-journal

ALTER TABLE bookings
    MODIFY COLUMN status
        ENUM('PENDING', 'CONFIRMED', 'REJECTED', 'FAILED', 'CANCELLED', 'HELD', 'EXPIRED') NOT NULL,
    ADD COLUMN expires_at DATETIME(6) NULL COMMENT 'a hold''s deadline, UTC' AFTER idempotency_key,
    ADD COLUMN extensions SMALLINT UNSIGNED NOT NULL DEFAULT 0 AFTER expires_at,
    ADD COLUMN payment_reference VARCHAR(128) NULL AFTER extensions,
    ADD KEY ix_booking_lapse (status, expires_at);
