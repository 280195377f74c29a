-- Waiting rooms (issue 18): a performance created with `"waiting_room": {"admit_per_second": N}` admits its
-- crowd to booking at N people a second, in the order they joined (the queue itself lives in Redis).
-- depends: 0006.best-available

ALTER TABLE performances
    ADD COLUMN admit_per_second INT UNSIGNED NULL COMMENT 'waiting room: admissions per second; NULL: none'
        AFTER strategy;
