-- Catalogue, bookings and the reconcile log. InnoDB, utf8mb4 throughout.
-- depends:

CREATE TABLE events (
    event_id   BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    name       VARCHAR(200) NOT NULL,
    venue      VARCHAR(200) NOT NULL,
    created_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE performances (
    performance_id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    event_id       BIGINT UNSIGNED NOT NULL,
    starts_at      VARCHAR(64) NOT NULL COMMENT 'ISO 8601 as given, offset kept',
    starts_at_utc  DATETIME NOT NULL,
    strategy       VARCHAR(20) NOT NULL,
    CONSTRAINT fk_performance_event FOREIGN KEY (event_id) REFERENCES events (event_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE sections (
    section_id     BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    performance_id BIGINT UNSIGNED NOT NULL,
    name           VARCHAR(200) NOT NULL,
    price          BIGINT UNSIGNED NOT NULL,
    seat_rows      INT UNSIGNED NOT NULL,
    seats_per_row  INT UNSIGNED NOT NULL,
    first_seat_id  BIGINT UNSIGNED NOT NULL,
    UNIQUE KEY uq_section_name (performance_id, name),
    CONSTRAINT fk_section_performance FOREIGN KEY (performance_id) REFERENCES performances (performance_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- Seat ids are allocated in blocks from this sequence so that each section's ids are contiguous
-- (AUTO_INCREMENT does not promise that for concurrent multi-row inserts).
CREATE TABLE id_sequences (
    name       VARCHAR(32) NOT NULL PRIMARY KEY,
    next_value BIGINT UNSIGNED NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

INSERT INTO id_sequences (name, next_value) VALUES ('seat', 1);

CREATE TABLE seats (
    seat_id        BIGINT UNSIGNED NOT NULL PRIMARY KEY,
    performance_id BIGINT UNSIGNED NOT NULL,
    section_id     BIGINT UNSIGNED NOT NULL,
    seat_row       INT UNSIGNED NOT NULL,
    seat_number    INT UNSIGNED NOT NULL,
    KEY ix_seat_performance (performance_id),
    CONSTRAINT fk_seat_section FOREIGN KEY (section_id) REFERENCES sections (section_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE bookings (
    booking_id     VARCHAR(40) NOT NULL PRIMARY KEY,
    performance_id BIGINT UNSIGNED NOT NULL,
    user_id        VARCHAR(64) NOT NULL,
    status         ENUM('PENDING', 'CONFIRMED', 'REJECTED', 'FAILED', 'CANCELLED') NOT NULL,
    strategy       VARCHAR(20) NOT NULL,
    reason         VARCHAR(500) NULL,
    created_at     TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    updated_at     TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3),
    KEY ix_booking_performance_status (performance_id, status),
    CONSTRAINT fk_booking_performance FOREIGN KEY (performance_id) REFERENCES performances (performance_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- The last line of defence against double booking, whatever the strategy: `active` is 1 while the booking
-- holds the seat (PENDING or CONFIRMED) and NULL otherwise; a UNIQUE key admits any number of NULLs but
-- only one (seat_id, 1).
CREATE TABLE booking_seats (
    booking_id     VARCHAR(40) NOT NULL,
    seat_id        BIGINT UNSIGNED NOT NULL,
    performance_id BIGINT UNSIGNED NOT NULL,
    active         TINYINT UNSIGNED NULL,
    PRIMARY KEY (booking_id, seat_id),
    UNIQUE KEY uq_one_active_booking_per_seat (seat_id, active),
    KEY ix_booking_seat_performance (performance_id, active),
    CONSTRAINT ck_active_is_one_or_null CHECK (active IS NULL OR active = 1),
    CONSTRAINT fk_booking_seat_booking FOREIGN KEY (booking_id) REFERENCES bookings (booking_id),
    CONSTRAINT fk_booking_seat_seat FOREIGN KEY (seat_id) REFERENCES seats (seat_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- Every compensation or repair the system makes on its own. `dedup_key` (action + booking or message id)
-- makes a retried compensation log once, however often the message is redelivered.
CREATE TABLE reconcile_log (
    id             BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    dedup_key      VARCHAR(120) NOT NULL,
    booking_id     VARCHAR(40) NULL,
    performance_id BIGINT UNSIGNED NULL,
    action         VARCHAR(40) NOT NULL,
    detail         TEXT NOT NULL,
    created_at     TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    UNIQUE KEY uq_reconcile_dedup (dedup_key),
    KEY ix_reconcile_booking (booking_id),
    KEY ix_reconcile_created (created_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
