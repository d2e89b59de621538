-- the SQLite schema of release 53d466c (before issue 13), as its init_schema left it
BEGIN TRANSACTION;
CREATE TABLE brand_dns (
        brand TEXT PRIMARY KEY,
        state TEXT,
        outcome TEXT,
        checked_at REAL,
        changed_at REAL,
        failures INTEGER NOT NULL DEFAULT 0,
        records TEXT,
        next_check_at REAL NOT NULL,
        lease_owner TEXT,
        lease_until REAL
    );
CREATE TABLE brand_dns_checks (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        brand TEXT NOT NULL,
        checked_at REAL NOT NULL,
        outcome TEXT NOT NULL,
        state TEXT NOT NULL,
        source TEXT NOT NULL,
        records TEXT NOT NULL
    );
CREATE TABLE brand_dns_transitions (
        brand TEXT NOT NULL,
        from_state TEXT NOT NULL,
        to_state TEXT NOT NULL,
        value INTEGER NOT NULL,
        PRIMARY KEY (brand, from_state, to_state)
    );
CREATE TABLE brand_dns_version (
        id INTEGER PRIMARY KEY,
        version INTEGER NOT NULL
    );
INSERT INTO "brand_dns_version" VALUES(1,0);
CREATE TABLE outbox_attempts (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        message INTEGER NOT NULL REFERENCES outbox_messages(id) ON DELETE CASCADE,
        at REAL NOT NULL,
        worker TEXT,
        outcome TEXT NOT NULL,
        host TEXT,
        code INTEGER,
        enhanced TEXT,
        text TEXT,
        possible_duplicate INTEGER NOT NULL DEFAULT 0,
        sha256 TEXT,
        signed_head BLOB,
        signed_full BLOB
    );
CREATE TABLE outbox_bodies (
        message INTEGER PRIMARY KEY REFERENCES outbox_messages(id) ON DELETE CASCADE,
        data BLOB NOT NULL
    );
CREATE TABLE outbox_counters (
        brand TEXT NOT NULL,
        event TEXT NOT NULL,
        name TEXT NOT NULL,
        value REAL NOT NULL,
        PRIMARY KEY (brand, event, name)
    );
CREATE TABLE outbox_events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        type TEXT NOT NULL,
        brand TEXT,
        message INTEGER,
        data TEXT NOT NULL,
        created_at REAL NOT NULL
    );
CREATE TABLE outbox_messages (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        brand TEXT NOT NULL,
        sender_brand TEXT NOT NULL,
        sign_brand TEXT NOT NULL,
        event TEXT NOT NULL,
        mandatory INTEGER NOT NULL,
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
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        next_attempt_at REAL,
        deadline REAL NOT NULL,
        sent_at REAL,
        lease_token TEXT,
        lease_expires_at REAL,
        dkim_domain TEXT,
        dkim_selector TEXT,
        sent_sha256 TEXT,
        possible_duplicate INTEGER NOT NULL DEFAULT 0
    );
CREATE TABLE outbox_meta (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
INSERT INTO "outbox_meta" VALUES('counters','1');
INSERT INTO "outbox_meta" VALUES('schema_version','1');
INSERT INTO "outbox_meta" VALUES('schema_fingerprint','a5009da86a45716929b75062e8f356d8d04da01d68323e14832e143068bf2e37');
CREATE TABLE outbox_reports (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        received_at REAL NOT NULL,
        kind TEXT NOT NULL,
        format TEXT NOT NULL,
        matched INTEGER NOT NULL,
        message INTEGER,
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
        raw BLOB NOT NULL
    );
CREATE TABLE outbox_suppressions (
        brand TEXT NOT NULL,
        email TEXT NOT NULL,
        reason TEXT NOT NULL,
        code INTEGER,
        enhanced TEXT,
        message INTEGER,
        created_at REAL NOT NULL,
        PRIMARY KEY (brand, email)
    );
CREATE TABLE webhook_attempts (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            delivery INTEGER NOT NULL REFERENCES webhook_deliveries(id) ON DELETE CASCADE,
            at REAL NOT NULL,
            worker TEXT,
            code INTEGER,
            error TEXT,
            duration REAL NOT NULL
        );
CREATE TABLE webhook_counters (
            endpoint INTEGER NOT NULL,
            name TEXT NOT NULL,
            value REAL NOT NULL,
            PRIMARY KEY (endpoint, name)
        );
CREATE TABLE webhook_deliveries (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            endpoint INTEGER NOT NULL REFERENCES webhook_endpoints(id) ON DELETE CASCADE,
            event INTEGER NOT NULL,
            status TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            window_start REAL NOT NULL,
            next_attempt_at REAL,
            lease_token TEXT,
            lease_expires_at REAL,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            delivered_at REAL,
            last_code INTEGER,
            last_error TEXT,
            UNIQUE (endpoint, event)
        );
CREATE TABLE webhook_endpoints (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            url TEXT NOT NULL,
            events TEXT NOT NULL,
            brand TEXT,
            description TEXT NOT NULL DEFAULT '',
            secret TEXT NOT NULL,
            old_secret TEXT,
            old_secret_until REAL,
            state TEXT NOT NULL,
            disabled_reason TEXT,
            disabled_at REAL,
            failing_since REAL,
            last_success_at REAL,
            last_failure_at REAL,
            last_error TEXT,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL
        );
CREATE UNIQUE INDEX outbox_idempotency ON outbox_messages (brand, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE UNIQUE INDEX outbox_dedupe ON outbox_messages (dedupe_key) WHERE dedupe_key IS NOT NULL;
CREATE UNIQUE INDEX outbox_message_id ON outbox_messages (message_id);
CREATE INDEX outbox_due ON outbox_messages (next_attempt_at, id) WHERE status IN ('queued', 'deferred');
CREATE INDEX outbox_domain ON outbox_messages (brand, domain);
CREATE INDEX outbox_status ON outbox_messages (status, updated_at);
CREATE INDEX outbox_attempts_message ON outbox_attempts (message);
CREATE INDEX outbox_events_created ON outbox_events (created_at);
CREATE INDEX brand_dns_checks_brand ON brand_dns_checks (brand, id);
CREATE INDEX webhook_due ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX webhook_leased ON webhook_deliveries (lease_expires_at) WHERE status = 'sending';
CREATE INDEX webhook_attempts_delivery ON webhook_attempts (delivery);
CREATE INDEX outbox_reports_message ON outbox_reports (message);
CREATE INDEX outbox_reports_pending ON outbox_reports (id) WHERE outcome IN ('pending', 'pending+suppressed');
CREATE INDEX outbox_reports_unmatched ON outbox_reports (id) WHERE matched = 0;
DELETE FROM "sqlite_sequence";
COMMIT;
