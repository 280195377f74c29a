-- Best available (issue 17): a request may name a section and a count instead of seats. A booking that waits
-- in line for them (fifo_partition, stream_state) keeps what it asked for here and an empty `seat_list`
-- until its turn comes and the seats are chosen.
-- depends: 0005.user-allowances

ALTER TABLE bookings
    ADD COLUMN wanted_section_id BIGINT UNSIGNED NULL COMMENT 'best available: the section asked for'
        AFTER seat_list,
    ADD COLUMN wanted_count SMALLINT UNSIGNED NULL COMMENT 'best available: how many seats' AFTER wanted_section_id;
