-- A limit per person (issue 17): MAX_SEATS_PER_USER seats of a performance across the user's PENDING, HELD
-- and CONFIRMED bookings that hold seats. Every write that gives a user seats locks the user's row here
-- first, then counts, so two requests of one user are counted one after the other (never both under the
-- limit in the same instant); other users never wait for it.
-- depends: 0004.holds

CREATE TABLE user_allowances (
    performance_id BIGINT UNSIGNED NOT NULL,
    user_id        VARCHAR(64) NOT NULL,
    PRIMARY KEY (performance_id, user_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

ALTER TABLE bookings ADD KEY ix_booking_performance_user (performance_id, user_id);
