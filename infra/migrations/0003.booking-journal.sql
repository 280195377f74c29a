-- MySQL is the journal of every accepted booking: no 201/202 leaves the service before the booking's row is
-- committed here (README "Failure handling"). A seat-holding PENDING booking (redis_async) has active
-- booking_seats rows, so the unique guard admits it only if no other booking holds a seat; a booking waiting
-- in line (fifo_partition, stream_state) has no booking_seats rows until it is decided, and its requested
-- seats are in `seat_list`.
-- depends: 0002.reconcile-lookups

ALTER TABLE bookings
    ADD COLUMN seat_list VARCHAR(2000) NULL COMMENT 'requested seat ids, ascending, comma-separated'
        AFTER user_id,
    ADD COLUMN idempotency_key VARCHAR(128) NULL COMMENT 'the client''s Idempotency-Key, per user'
        AFTER reason;

UPDATE bookings b
   SET b.seat_list = (SELECT GROUP_CONCAT(bs.seat_id ORDER BY bs.seat_id SEPARATOR ',')
                        FROM booking_seats bs WHERE bs.booking_id = b.booking_id);

ALTER TABLE bookings MODIFY COLUMN seat_list VARCHAR(2000) NOT NULL;

-- Per user: two users may send the same key. A NULL key (no header) never collides.
ALTER TABLE bookings ADD UNIQUE KEY uq_booking_user_key (user_id, idempotency_key);

-- The reconcile job's sweep: PENDING bookings older than the hold deadline, oldest first.
ALTER TABLE bookings ADD KEY ix_booking_status_created (status, created_at);
