-- the PostgreSQL schema of release 53d466c (before issue 13): its DDL list, one
-- statement per block, and the fingerprint its init_schema stored
SELECT pg_advisory_xact_lock(7270701)
;;
CREATE TABLE IF NOT EXISTS outbox_meta (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    )
;;
CREATE TABLE IF NOT EXISTS outbox_messages (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        brand TEXT NOT NULL,
        sender_brand TEXT NOT NULL,
        sign_brand TEXT NOT NULL,
        event TEXT NOT NULL,
        mandatory BOOLEAN NOT NULL,
        domain TEXT,
        recipient TEXT NOT NULL,
        language TEXT NOT NULL,
        idempotency_key TEXT,
        request_hash TEXT NOT NULL,
        dedupe_key TEXT,
        message_id TEXT NOT NULL,
        mail_from TEXT NOT NULL,
        rcpt_to TEXT NOT NULL,
        data_sha256 TEXT NOT NULL,
        status TEXT NOT NULL,
        reason TEXT,
        attempts INTEGER NOT NULL DEFAULT 0,
        created_at DOUBLE PRECISION NOT NULL,
        updated_at DOUBLE PRECISION NOT NULL,
        next_attempt_at DOUBLE PRECISION,
        deadline DOUBLE PRECISION NOT NULL,
        sent_at DOUBLE PRECISION,
        lease_token TEXT,
        lease_expires_at DOUBLE PRECISION,
        dkim_domain TEXT,
        dkim_selector TEXT,
        sent_sha256 TEXT,
        possible_duplicate BOOLEAN NOT NULL DEFAULT FALSE
    )
;;
CREATE TABLE IF NOT EXISTS outbox_attempts (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        message BIGINT NOT NULL REFERENCES outbox_messages(id) ON DELETE CASCADE,
        at DOUBLE PRECISION NOT NULL,
        worker TEXT,
        outcome TEXT NOT NULL,
        host TEXT,
        code INTEGER,
        enhanced TEXT,
        text TEXT,
        possible_duplicate BOOLEAN NOT NULL DEFAULT FALSE,
        sha256 TEXT,
        signed_head BYTEA,
        signed_full BYTEA
    )
;;
CREATE TABLE IF NOT EXISTS outbox_bodies (
        message BIGINT PRIMARY KEY REFERENCES outbox_messages(id) ON DELETE CASCADE,
        data BYTEA  NOT NULL
    )
;;
CREATE TABLE IF NOT EXISTS outbox_suppressions (
        brand TEXT NOT NULL,
        email TEXT NOT NULL,
        reason TEXT NOT NULL,
        code INTEGER,
        enhanced TEXT,
        message BIGINT,
        created_at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (brand, email)
    )
;;
CREATE UNIQUE INDEX IF NOT EXISTS outbox_idempotency ON outbox_messages (brand, idempotency_key) WHERE idempotency_key IS NOT NULL
;;
CREATE UNIQUE INDEX IF NOT EXISTS outbox_dedupe ON outbox_messages (dedupe_key) WHERE dedupe_key IS NOT NULL
;;
CREATE UNIQUE INDEX IF NOT EXISTS outbox_message_id ON outbox_messages (message_id)
;;
CREATE INDEX IF NOT EXISTS outbox_due ON outbox_messages (next_attempt_at, id) WHERE status IN ('queued', 'deferred')
;;
CREATE INDEX IF NOT EXISTS outbox_sending ON outbox_messages (lease_expires_at) WHERE status = 'sending'
;;
CREATE INDEX IF NOT EXISTS outbox_pending_domain ON outbox_messages (brand, domain) WHERE status IN ('queued', 'deferred', 'held')
;;
CREATE INDEX IF NOT EXISTS outbox_held ON outbox_messages (sender_brand) WHERE status = 'held'
;;
CREATE INDEX IF NOT EXISTS outbox_finished ON outbox_messages (updated_at) WHERE status IN ('sent', 'cancelled', 'failed', 'suppressed', 'bounced')
;;
CREATE INDEX IF NOT EXISTS outbox_attempts_message ON outbox_attempts (message)
;;
CREATE TABLE IF NOT EXISTS outbox_counters (
        brand TEXT NOT NULL,
        event TEXT NOT NULL,
        name TEXT NOT NULL,
        value DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (brand, event, name)
    )
;;
CREATE TABLE IF NOT EXISTS outbox_events (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        type TEXT NOT NULL,
        brand TEXT,
        message BIGINT,
        data TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL
    )
;;
CREATE INDEX IF NOT EXISTS outbox_events_created ON outbox_events (created_at)
;;
CREATE TABLE IF NOT EXISTS brand_dns (
        brand TEXT PRIMARY KEY,
        state TEXT,
        outcome TEXT,
        checked_at DOUBLE PRECISION,
        changed_at DOUBLE PRECISION,
        failures INTEGER NOT NULL DEFAULT 0,
        records TEXT,
        next_check_at DOUBLE PRECISION NOT NULL,
        lease_owner TEXT,
        lease_until DOUBLE PRECISION
    )
;;
CREATE TABLE IF NOT EXISTS brand_dns_checks (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        brand TEXT NOT NULL,
        checked_at DOUBLE PRECISION NOT NULL,
        outcome TEXT NOT NULL,
        state TEXT NOT NULL,
        source TEXT NOT NULL,
        records TEXT NOT NULL
    )
;;
CREATE INDEX IF NOT EXISTS brand_dns_checks_brand ON brand_dns_checks (brand, id)
;;
CREATE TABLE IF NOT EXISTS brand_dns_transitions (
        brand TEXT NOT NULL,
        from_state TEXT NOT NULL,
        to_state TEXT NOT NULL,
        value BIGINT NOT NULL,
        PRIMARY KEY (brand, from_state, to_state)
    )
;;
CREATE TABLE IF NOT EXISTS brand_dns_version (
        id INTEGER PRIMARY KEY,
        version BIGINT NOT NULL
    )
;;
INSERT INTO brand_dns_version (id, version) VALUES (1, 0) ON CONFLICT (id) DO NOTHING
;;
CREATE TABLE IF NOT EXISTS webhook_endpoints (
            id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            url TEXT NOT NULL,
            events TEXT NOT NULL,
            brand TEXT,
            description TEXT NOT NULL DEFAULT '',
            secret TEXT NOT NULL,
            old_secret TEXT,
            old_secret_until DOUBLE PRECISION,
            state TEXT NOT NULL,
            disabled_reason TEXT,
            disabled_at DOUBLE PRECISION,
            failing_since DOUBLE PRECISION,
            last_success_at DOUBLE PRECISION,
            last_failure_at DOUBLE PRECISION,
            last_error TEXT,
            created_at DOUBLE PRECISION NOT NULL,
            updated_at DOUBLE PRECISION NOT NULL
        )
;;
CREATE TABLE IF NOT EXISTS webhook_deliveries (
            id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            endpoint BIGINT NOT NULL REFERENCES webhook_endpoints(id) ON DELETE CASCADE,
            event BIGINT NOT NULL,
            status TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            window_start DOUBLE PRECISION NOT NULL,
            next_attempt_at DOUBLE PRECISION,
            lease_token TEXT,
            lease_expires_at DOUBLE PRECISION,
            created_at DOUBLE PRECISION NOT NULL,
            updated_at DOUBLE PRECISION NOT NULL,
            delivered_at DOUBLE PRECISION,
            last_code INTEGER,
            last_error TEXT,
            UNIQUE (endpoint, event)
        )
;;
CREATE INDEX IF NOT EXISTS webhook_due ON webhook_deliveries (next_attempt_at) WHERE status = 'pending'
;;
CREATE INDEX IF NOT EXISTS webhook_leased ON webhook_deliveries (lease_expires_at) WHERE status = 'sending'
;;
CREATE TABLE IF NOT EXISTS webhook_attempts (
            id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            delivery BIGINT NOT NULL REFERENCES webhook_deliveries(id) ON DELETE CASCADE,
            at DOUBLE PRECISION NOT NULL,
            worker TEXT,
            code INTEGER,
            error TEXT,
            duration DOUBLE PRECISION NOT NULL
        )
;;
CREATE INDEX IF NOT EXISTS webhook_attempts_delivery ON webhook_attempts (delivery)
;;
CREATE TABLE IF NOT EXISTS webhook_counters (
            endpoint BIGINT NOT NULL,
            name TEXT NOT NULL,
            value DOUBLE PRECISION NOT NULL,
            PRIMARY KEY (endpoint, name)
        )
;;
CREATE TABLE IF NOT EXISTS outbox_reports (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        received_at DOUBLE PRECISION NOT NULL,
        kind TEXT NOT NULL,
        format TEXT NOT NULL,
        matched BOOLEAN NOT NULL,
        message BIGINT,
        brand TEXT,
        mail_from TEXT,
        rcpt TEXT,
        recipient TEXT,
        action TEXT,
        enhanced TEXT,
        code INTEGER,
        diagnostic TEXT,
        original_message_id TEXT,
        feedback_type TEXT,
        outcome TEXT NOT NULL,
        sha256 TEXT NOT NULL,
        size INTEGER NOT NULL,
        raw BYTEA NOT NULL
    )
;;
CREATE INDEX IF NOT EXISTS outbox_reports_message ON outbox_reports (message)
;;
CREATE INDEX IF NOT EXISTS outbox_reports_pending ON outbox_reports (id) WHERE outcome IN ('pending', 'pending+suppressed')
;;
CREATE INDEX IF NOT EXISTS outbox_reports_unmatched ON outbox_reports (id) WHERE matched = FALSE
;;
INSERT INTO outbox_counters (brand, event, name, value) SELECT brand, event, 'accepted', COUNT(*) FROM outbox_messages WHERE NOT EXISTS (SELECT 1 FROM outbox_meta WHERE key = 'counters') GROUP BY brand, event
;;
INSERT INTO outbox_counters (brand, event, name, value) SELECT brand, event, status, COUNT(*) FROM outbox_messages WHERE status IN ('sent', 'failed', 'suppressed', 'cancelled') AND NOT EXISTS (SELECT 1 FROM outbox_meta WHERE key = 'counters') GROUP BY brand, event, status
;;
INSERT INTO outbox_counters (brand, event, name, value) SELECT brand, event, 'latency_sum', SUM(sent_at - created_at) FROM outbox_messages WHERE status = 'sent' AND sent_at IS NOT NULL AND NOT EXISTS (SELECT 1 FROM outbox_meta WHERE key = 'counters') GROUP BY brand, event
;;
INSERT INTO outbox_counters (brand, event, name, value) SELECT brand, event, 'latency_le:1', COUNT(*) FROM outbox_messages WHERE status = 'sent' AND sent_at IS NOT NULL AND sent_at - created_at <= 1.0 AND NOT EXISTS (SELECT 1 FROM outbox_meta WHERE key = 'counters') GROUP BY brand, event
;;
INSERT INTO outbox_counters (brand, event, name, value) SELECT brand, event, 'latency_le:5', COUNT(*) FROM outbox_messages WHERE status = 'sent' AND sent_at IS NOT NULL AND sent_at - created_at <= 5.0 AND NOT EXISTS (SELECT 1 FROM outbox_meta WHERE key = 'counters') GROUP BY brand, event
;;
INSERT INTO outbox_counters (brand, event, name, value) SELECT brand, event, 'latency_le:15', COUNT(*) FROM outbox_messages WHERE status = 'sent' AND sent_at IS NOT NULL AND sent_at - created_at <= 15.0 AND NOT EXISTS (SELECT 1 FROM outbox_meta WHERE key = 'counters') GROUP BY brand, event
;;
INSERT INTO outbox_counters (brand, event, name, value) SELECT brand, event, 'latency_le:30', COUNT(*) FROM outbox_messages WHERE status = 'sent' AND sent_at IS NOT NULL AND sent_at - created_at <= 30.0 AND NOT EXISTS (SELECT 1 FROM outbox_meta WHERE key = 'counters') GROUP BY brand, event
;;
INSERT INTO outbox_counters (brand, event, name, value) SELECT brand, event, 'latency_le:60', COUNT(*) FROM outbox_messages WHERE status = 'sent' AND sent_at IS NOT NULL AND sent_at - created_at <= 60.0 AND NOT EXISTS (SELECT 1 FROM outbox_meta WHERE key = 'counters') GROUP BY brand, event
;;
INSERT INTO outbox_counters (brand, event, name, value) SELECT brand, event, 'latency_le:120', COUNT(*) FROM outbox_messages WHERE status = 'sent' AND sent_at IS NOT NULL AND sent_at - created_at <= 120.0 AND NOT EXISTS (SELECT 1 FROM outbox_meta WHERE key = 'counters') GROUP BY brand, event
;;
INSERT INTO outbox_counters (brand, event, name, value) SELECT brand, event, 'latency_le:300', COUNT(*) FROM outbox_messages WHERE status = 'sent' AND sent_at IS NOT NULL AND sent_at - created_at <= 300.0 AND NOT EXISTS (SELECT 1 FROM outbox_meta WHERE key = 'counters') GROUP BY brand, event
;;
INSERT INTO outbox_counters (brand, event, name, value) SELECT brand, event, 'latency_le:600', COUNT(*) FROM outbox_messages WHERE status = 'sent' AND sent_at IS NOT NULL AND sent_at - created_at <= 600.0 AND NOT EXISTS (SELECT 1 FROM outbox_meta WHERE key = 'counters') GROUP BY brand, event
;;
INSERT INTO outbox_counters (brand, event, name, value) SELECT brand, event, 'latency_le:1800', COUNT(*) FROM outbox_messages WHERE status = 'sent' AND sent_at IS NOT NULL AND sent_at - created_at <= 1800.0 AND NOT EXISTS (SELECT 1 FROM outbox_meta WHERE key = 'counters') GROUP BY brand, event
;;
INSERT INTO outbox_counters (brand, event, name, value) SELECT brand, event, 'latency_le:3600', COUNT(*) FROM outbox_messages WHERE status = 'sent' AND sent_at IS NOT NULL AND sent_at - created_at <= 3600.0 AND NOT EXISTS (SELECT 1 FROM outbox_meta WHERE key = 'counters') GROUP BY brand, event
;;
INSERT INTO outbox_counters (brand, event, name, value) SELECT brand, event, 'latency_le:14400', COUNT(*) FROM outbox_messages WHERE status = 'sent' AND sent_at IS NOT NULL AND sent_at - created_at <= 14400.0 AND NOT EXISTS (SELECT 1 FROM outbox_meta WHERE key = 'counters') GROUP BY brand, event
;;
INSERT INTO outbox_counters (brand, event, name, value) SELECT brand, event, 'latency_le:86400', COUNT(*) FROM outbox_messages WHERE status = 'sent' AND sent_at IS NOT NULL AND sent_at - created_at <= 86400.0 AND NOT EXISTS (SELECT 1 FROM outbox_meta WHERE key = 'counters') GROUP BY brand, event
;;
INSERT INTO outbox_counters (brand, event, name, value) SELECT brand, event, 'latency_le:345600', COUNT(*) FROM outbox_messages WHERE status = 'sent' AND sent_at IS NOT NULL AND sent_at - created_at <= 345600.0 AND NOT EXISTS (SELECT 1 FROM outbox_meta WHERE key = 'counters') GROUP BY brand, event
;;
INSERT INTO outbox_meta (key, value) VALUES ('counters', '1') ON CONFLICT (key) DO NOTHING
;;
INSERT INTO outbox_meta (key, value) VALUES ('schema_version', '1') ON CONFLICT (key) DO NOTHING
;;
INSERT INTO outbox_meta (key, value) VALUES ('schema_fingerprint', 'a0f5dbaac9fa48ca989429658a87303a18c362dfe040814eb8c41df6fa60c0e9')
;;
