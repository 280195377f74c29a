-- The reconcile job's lookups: which performances had bookings written lately, and which log entries are
-- still open (a stream_state ledger release waiting to be resent).
-- depends: 0001.initial-schema

ALTER TABLE bookings ADD KEY ix_booking_updated (updated_at);
ALTER TABLE reconcile_log ADD KEY ix_reconcile_action (action, performance_id);
