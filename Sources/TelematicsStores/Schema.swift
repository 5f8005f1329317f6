/// The tables of both backends, versioned. A store opens, reads
/// `schema_version` and runs the migrations above it, each in the
/// transaction that records its version.
///
/// Tables (same names and columns on both backends; PostgreSQL has the
/// stricter types):
/// - `consents`: latest consent state per VIN.
/// - `vehicle_states`: technical data of the newest call per VIN.
/// - `teleservice_calls`: every call, keyed (vin, sequence).
/// - `maintenance_cases`: cases, at most one not closed per (vin, need)
///   (a partial unique index enforces it).
/// - `charge_sessions`: keyed (vin, session_id); the position only sealed.
/// - `probes` (version 3; `probe_points` before): one row per pseudonymised
///   RTTI probe, unique by (t_ms, pseudonym, sequence), its points packed in a blob
///   (``ProbePacking``): a row per probe, not twenty per probe.
/// - `traffic_aggregates`, `traffic_speed_buckets`: per (minute, tile), no
///   vehicle reference; `traffic_vehicles` (minute, tile, pseudonym) only
///   makes the distinct-vehicle count idempotent.
/// - `pipeline_counters` (version 2): running totals of the pipeline
///   (`processed.rtti_probe`, `stored.probe_point`, ...), added to in the
///   transaction of the batch they describe, so they agree with the data.
///
/// Version 3 replaces `probe_points` (a row per point) by `probes`. The raw
/// points of version 2 are dropped, not converted: they live 24 hours, and
/// the aggregates they fed stay.
///
/// Version 4 keeps each aggregate's speed histogram in its row
/// (`speed_histogram`), merged by the upsert, instead of a row per bucket
/// in `traffic_speed_buckets` (ten or more per tile and minute on real
/// traffic). Rows written before stay in `traffic_speed_buckets` and are
/// still read, added to the row's own histogram.
///
/// Version 5 seals the charging session id (RULES.md: charging data is
/// stored encrypted): `sealed_session_id` holds it, sealed with the row's
/// `key_id`, and `session_id` the pipeline's keyed reference of it, which
/// keeps (vin, session_id) the idempotency key. Rows of earlier versions
/// keep their id in the clear until `telematics keys rotate` seals them.
/// It also indexes what retention deletes by time (sessions by end, calls by
/// time, closed cases by closing); raw probes and aggregates had theirs.
///
/// Version 6 keys the traffic tables by time first: `traffic_aggregates`
/// (minute_ms, tile), `traffic_vehicles` (minute_ms, tile, pseudonym) and
/// `probes` unique by (t_ms, pseudonym, sequence). Keyed by tile or
/// pseudonym first, every row of a batch landed on a B-tree page of its
/// own, so a batch of 2,000 records dirtied thousands of pages; keyed by
/// time, its rows land together at the end. SQLite keeps the aggregates
/// and memberships WITHOUT ROWID and the histogram sparse
/// (``SpeedHistogram/packed``). New probes' points are packed as
/// differences (`points_format` 2, about 8 bytes a point instead of 30).
///
/// Version 7 keeps the vehicles an aggregate has counted in its row
/// (`vehicles`, ``VehicleSet``) instead of a `traffic_vehicles` row each:
/// nearly every tile-minute holds one or two vehicles, so the table cost a
/// row write per aggregate row. The migration moves the memberships into
/// the sets (in Swift: the keys are hashes) and drops the table; retention
/// clears a set with the raw points, erasure takes the vehicle out of it.
///
/// Version 2 also indexes the cross-vehicle reads of the `query` command:
/// maintenance cases by service partner, traffic aggregates by minute.
enum Schema {
    /// The version this code writes.
    static let version = 7

    /// The version whose migration moves `traffic_vehicles` into the
    /// aggregates' vehicle sets, after its statements (each backend's
    /// `moveMembershipsIntoSets`).
    static let vehicleSetsVersion = 7

    /// Migrations of SQLite, by version (index 0 is version 1). A migration
    /// is never edited once released: existing databases ran it already.
    static let sqlite: [[String]] = [[
        """
        CREATE TABLE consents (
            vin TEXT PRIMARY KEY,
            teleservices INTEGER NOT NULL, smart_maintenance INTEGER NOT NULL,
            charging_history INTEGER NOT NULL, charging_location INTEGER NOT NULL,
            rtti INTEGER NOT NULL, account_deleted INTEGER NOT NULL,
            recorded_at_ms INTEGER NOT NULL, sequence INTEGER NOT NULL)
        """,
        """
        CREATE TABLE vehicle_states (
            vin TEXT PRIMARY KEY,
            recorded_at_ms INTEGER NOT NULL, sequence INTEGER NOT NULL,
            mileage_km INTEGER NOT NULL, battery_12v_mv INTEGER NOT NULL,
            service_items TEXT NOT NULL, check_controls TEXT NOT NULL)
        """,
        """
        CREATE TABLE teleservice_calls (
            vin TEXT NOT NULL, sequence INTEGER NOT NULL, recorded_at_ms INTEGER NOT NULL,
            trigger INTEGER NOT NULL, mileage_km INTEGER NOT NULL, battery_12v_mv INTEGER NOT NULL,
            lat_e7 INTEGER, lon_e7 INTEGER, service_partner_id TEXT NOT NULL, in_workshop INTEGER NOT NULL,
            service_items TEXT NOT NULL, check_controls TEXT NOT NULL,
            PRIMARY KEY (vin, sequence))
        """,
        """
        CREATE TABLE maintenance_cases (
            case_id INTEGER PRIMARY KEY,
            vin TEXT NOT NULL, need TEXT NOT NULL,
            state TEXT NOT NULL CHECK (state IN ('open', 'updated', 'closed')),
            service_partner_id TEXT NOT NULL, opened_at_ms INTEGER NOT NULL,
            updated_at_ms INTEGER, closed_at_ms INTEGER,
            last_sequence INTEGER NOT NULL, notifications INTEGER NOT NULL)
        """,
        "CREATE UNIQUE INDEX maintenance_cases_one_open ON maintenance_cases (vin, need) WHERE state <> 'closed'",
        "CREATE INDEX maintenance_cases_vin ON maintenance_cases (vin)",
        """
        CREATE TABLE charge_sessions (
            vin TEXT NOT NULL, session_id TEXT NOT NULL, sequence INTEGER NOT NULL, recorded_at_ms INTEGER NOT NULL,
            started_at_ms INTEGER NOT NULL, ended_at_ms INTEGER NOT NULL,
            soc_start_permille INTEGER NOT NULL, soc_end_permille INTEGER NOT NULL,
            energy_wh INTEGER NOT NULL, max_power_w INTEGER NOT NULL,
            current INTEGER NOT NULL, site INTEGER NOT NULL, end_reason INTEGER NOT NULL,
            sealed_position BLOB, key_id TEXT,
            PRIMARY KEY (vin, session_id))
        """,
        """
        CREATE TABLE probe_points (
            pseudonym TEXT NOT NULL CHECK (length(pseudonym) > 0),
            sequence INTEGER NOT NULL, point_index INTEGER NOT NULL,
            t_ms INTEGER NOT NULL, lat_e7 INTEGER NOT NULL, lon_e7 INTEGER NOT NULL,
            speed_dkmh INTEGER NOT NULL, heading_deg INTEGER NOT NULL, tile INTEGER NOT NULL,
            PRIMARY KEY (pseudonym, sequence, point_index))
        """,
        // Retention deletes raw points by age.
        "CREATE INDEX probe_points_t_ms ON probe_points (t_ms)",
        """
        CREATE TABLE traffic_aggregates (
            tile INTEGER NOT NULL, minute_ms INTEGER NOT NULL,
            point_count INTEGER NOT NULL, vehicle_count INTEGER NOT NULL, speed_sum_dkmh INTEGER NOT NULL,
            PRIMARY KEY (tile, minute_ms))
        """,
        """
        CREATE TABLE traffic_speed_buckets (
            tile INTEGER NOT NULL, minute_ms INTEGER NOT NULL, bucket INTEGER NOT NULL, point_count INTEGER NOT NULL,
            PRIMARY KEY (tile, minute_ms, bucket))
        """,
        """
        CREATE TABLE traffic_vehicles (
            tile INTEGER NOT NULL, minute_ms INTEGER NOT NULL, pseudonym TEXT NOT NULL,
            PRIMARY KEY (tile, minute_ms, pseudonym))
        """,
    ], [
        // Version 2: counters, and indexes for the reads across vehicles and tiles.
        "CREATE TABLE pipeline_counters (name TEXT PRIMARY KEY, value BIGINT NOT NULL)",
        // (partner, case_id): a workshop's cases newest first without a sort.
        "CREATE INDEX maintenance_cases_partner ON maintenance_cases (service_partner_id, case_id)",
        "CREATE INDEX traffic_aggregates_minute ON traffic_aggregates (minute_ms)",
    ], [
        // Version 3: a row per probe; retention deletes by the first point's time.
        "DROP TABLE probe_points",
        """
        CREATE TABLE probes (
            pseudonym TEXT NOT NULL CHECK (length(pseudonym) > 0), sequence INTEGER NOT NULL,
            t_ms INTEGER NOT NULL, point_count INTEGER NOT NULL, points BLOB NOT NULL,
            PRIMARY KEY (pseudonym, sequence))
        """,
        "CREATE INDEX probes_t_ms ON probes (t_ms)",
    ], [
        // Version 4: the speed histogram in the aggregate row (SpeedHistogram.packed).
        "ALTER TABLE traffic_aggregates ADD COLUMN speed_histogram BLOB",
    ], [
        // Version 5: the session id sealed; session_id holds its keyed reference.
        "ALTER TABLE charge_sessions ADD COLUMN sealed_session_id BLOB",
        // Retention finds expired personal data by time without a scan.
        "CREATE INDEX charge_sessions_ended ON charge_sessions (ended_at_ms)",
        "CREATE INDEX teleservice_calls_recorded ON teleservice_calls (recorded_at_ms)",
        "CREATE INDEX maintenance_cases_closed ON maintenance_cases (closed_at_ms) WHERE state = 'closed'",
    ], [
        // Version 6: the traffic tables keyed by time first, so that a batch's
        // writes land at the end of each B-tree instead of on a page per row.
        // Aggregates and memberships become WITHOUT ROWID tables on
        // (minute, tile[, pseudonym]); the histogram is stored sparse.
        """
        CREATE TABLE traffic_aggregates_6 (
            minute_ms INTEGER NOT NULL, tile INTEGER NOT NULL,
            point_count INTEGER NOT NULL, vehicle_count INTEGER NOT NULL, speed_sum_dkmh INTEGER NOT NULL,
            speed_histogram BLOB,
            PRIMARY KEY (minute_ms, tile)) WITHOUT ROWID
        """,
        """
        INSERT INTO traffic_aggregates_6
        SELECT minute_ms, tile, point_count, vehicle_count, speed_sum_dkmh, tm_hist_from_dense(speed_histogram) FROM traffic_aggregates
        """,
        "DROP TABLE traffic_aggregates",
        "ALTER TABLE traffic_aggregates_6 RENAME TO traffic_aggregates",
        """
        CREATE TABLE traffic_vehicles_6 (
            minute_ms INTEGER NOT NULL, tile INTEGER NOT NULL, pseudonym TEXT NOT NULL,
            PRIMARY KEY (minute_ms, tile, pseudonym)) WITHOUT ROWID
        """,
        "INSERT INTO traffic_vehicles_6 SELECT minute_ms, tile, pseudonym FROM traffic_vehicles",
        "DROP TABLE traffic_vehicles",
        "ALTER TABLE traffic_vehicles_6 RENAME TO traffic_vehicles",
        // Probes stay a rowid table (their rows are large), unique by
        // (t_ms, pseudonym, sequence): a redelivered probe has the same first
        // point, and the index grows at its end. Reads by pseudonym (export,
        // erase) scan the day's probes.
        // `points_format` (ProbePacking): 1 for the rows of before, 2 for new ones.
        """
        CREATE TABLE probes_6 (
            pseudonym TEXT NOT NULL CHECK (length(pseudonym) > 0), sequence INTEGER NOT NULL,
            t_ms INTEGER NOT NULL, point_count INTEGER NOT NULL, points BLOB NOT NULL,
            points_format INTEGER NOT NULL DEFAULT 2,
            UNIQUE (t_ms, pseudonym, sequence))
        """,
        """
        INSERT INTO probes_6 (pseudonym, sequence, t_ms, point_count, points, points_format)
        SELECT pseudonym, sequence, t_ms, point_count, points, 1 FROM probes ORDER BY t_ms
        """,
        "DROP TABLE probes",
        "ALTER TABLE probes_6 RENAME TO probes",
    ], [
        // Version 7: the vehicle sets (then traffic_vehicles moves in and goes).
        "ALTER TABLE traffic_aggregates ADD COLUMN vehicles BLOB",
    ]]

    /// Migrations of PostgreSQL, by version (index 0 is version 1).
    /// Sequences (u64) are stored as bigint by bit pattern: vehicles count
    /// from 0, so ordering in SQL holds below 2^63.
    static let postgres: [[String]] = [[
        """
        CREATE TABLE consents (
            vin text PRIMARY KEY,
            teleservices boolean NOT NULL, smart_maintenance boolean NOT NULL,
            charging_history boolean NOT NULL, charging_location boolean NOT NULL,
            rtti boolean NOT NULL, account_deleted boolean NOT NULL,
            recorded_at_ms bigint NOT NULL, sequence bigint NOT NULL)
        """,
        """
        CREATE TABLE vehicle_states (
            vin text PRIMARY KEY,
            recorded_at_ms bigint NOT NULL, sequence bigint NOT NULL,
            mileage_km bigint NOT NULL, battery_12v_mv bigint NOT NULL,
            service_items jsonb NOT NULL, check_controls jsonb NOT NULL)
        """,
        """
        CREATE TABLE teleservice_calls (
            vin text NOT NULL, sequence bigint NOT NULL, recorded_at_ms bigint NOT NULL,
            trigger integer NOT NULL, mileage_km bigint NOT NULL, battery_12v_mv bigint NOT NULL,
            lat_e7 integer, lon_e7 integer, service_partner_id text NOT NULL, in_workshop boolean NOT NULL,
            service_items jsonb NOT NULL, check_controls jsonb NOT NULL,
            PRIMARY KEY (vin, sequence))
        """,
        """
        CREATE TABLE maintenance_cases (
            case_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            vin text NOT NULL, need text NOT NULL,
            state text NOT NULL CHECK (state IN ('open', 'updated', 'closed')),
            service_partner_id text NOT NULL, opened_at_ms bigint NOT NULL,
            updated_at_ms bigint, closed_at_ms bigint,
            last_sequence bigint NOT NULL, notifications integer NOT NULL)
        """,
        "CREATE UNIQUE INDEX maintenance_cases_one_open ON maintenance_cases (vin, need) WHERE state <> 'closed'",
        "CREATE INDEX maintenance_cases_vin ON maintenance_cases (vin)",
        """
        CREATE TABLE charge_sessions (
            vin text NOT NULL, session_id text NOT NULL, sequence bigint NOT NULL, recorded_at_ms bigint NOT NULL,
            started_at_ms bigint NOT NULL, ended_at_ms bigint NOT NULL,
            soc_start_permille bigint NOT NULL, soc_end_permille bigint NOT NULL,
            energy_wh bigint NOT NULL, max_power_w bigint NOT NULL,
            current integer NOT NULL, site integer NOT NULL, end_reason integer NOT NULL,
            sealed_position bytea, key_id text,
            PRIMARY KEY (vin, session_id))
        """,
        """
        CREATE TABLE probe_points (
            pseudonym text NOT NULL CHECK (length(pseudonym) > 0),
            sequence bigint NOT NULL, point_index integer NOT NULL,
            t_ms bigint NOT NULL, lat_e7 integer NOT NULL, lon_e7 integer NOT NULL,
            speed_dkmh bigint NOT NULL, heading_deg bigint NOT NULL, tile bigint NOT NULL,
            PRIMARY KEY (pseudonym, sequence, point_index))
        """,
        "CREATE INDEX probe_points_t_ms ON probe_points (t_ms)",
        """
        CREATE TABLE traffic_aggregates (
            tile bigint NOT NULL, minute_ms bigint NOT NULL,
            point_count bigint NOT NULL, vehicle_count bigint NOT NULL, speed_sum_dkmh bigint NOT NULL,
            PRIMARY KEY (tile, minute_ms))
        """,
        """
        CREATE TABLE traffic_speed_buckets (
            tile bigint NOT NULL, minute_ms bigint NOT NULL, bucket integer NOT NULL, point_count bigint NOT NULL,
            PRIMARY KEY (tile, minute_ms, bucket))
        """,
        """
        CREATE TABLE traffic_vehicles (
            tile bigint NOT NULL, minute_ms bigint NOT NULL, pseudonym text NOT NULL,
            PRIMARY KEY (tile, minute_ms, pseudonym))
        """,
    ], [
        "CREATE TABLE pipeline_counters (name text PRIMARY KEY, value bigint NOT NULL)",
        "CREATE INDEX maintenance_cases_partner ON maintenance_cases (service_partner_id, case_id)",
        "CREATE INDEX traffic_aggregates_minute ON traffic_aggregates (minute_ms)",
    ], [
        "DROP TABLE probe_points",
        """
        CREATE TABLE probes (
            pseudonym text NOT NULL CHECK (length(pseudonym) > 0), sequence bigint NOT NULL,
            t_ms bigint NOT NULL, point_count integer NOT NULL, points bytea NOT NULL,
            PRIMARY KEY (pseudonym, sequence))
        """,
        "CREATE INDEX probes_t_ms ON probes (t_ms)",
    ], [
        "ALTER TABLE traffic_aggregates ADD COLUMN speed_histogram bigint[]",
    ], [
        "ALTER TABLE charge_sessions ADD COLUMN sealed_session_id bytea",
        "CREATE INDEX charge_sessions_ended ON charge_sessions (ended_at_ms)",
        "CREATE INDEX teleservice_calls_recorded ON teleservice_calls (recorded_at_ms)",
        "CREATE INDEX maintenance_cases_closed ON maintenance_cases (closed_at_ms) WHERE state = 'closed'",
    ], [
        // Version 6: as SQLite's, the traffic keys by time first (the
        // histogram stays bigint[], added element-wise).
        "ALTER TABLE traffic_aggregates DROP CONSTRAINT traffic_aggregates_pkey, ADD PRIMARY KEY (minute_ms, tile)",
        "DROP INDEX traffic_aggregates_minute",
        "ALTER TABLE traffic_vehicles DROP CONSTRAINT traffic_vehicles_pkey, ADD PRIMARY KEY (minute_ms, tile, pseudonym)",
        "ALTER TABLE probes DROP CONSTRAINT probes_pkey, ADD CONSTRAINT probes_key UNIQUE (t_ms, pseudonym, sequence)",
        "DROP INDEX probes_t_ms",
        "ALTER TABLE probes ADD COLUMN points_format smallint NOT NULL DEFAULT 1",
        "ALTER TABLE probes ALTER COLUMN points_format SET DEFAULT 2",
    ], [
        // Version 7: as SQLite's, an ascending bigint[].
        "ALTER TABLE traffic_aggregates ADD COLUMN vehicles bigint[]",
    ]]

    /// Tables counted by `stats()`, with the counting SQL; `vehicles`
    /// counts the keys of one row's vehicle set.
    static func statsQuery(vehicles: String) -> String { """
        SELECT (SELECT count(*) FROM consents), (SELECT count(*) FROM vehicle_states),
               (SELECT count(*) FROM teleservice_calls), (SELECT count(*) FROM maintenance_cases),
               (SELECT count(*) FROM maintenance_cases WHERE state <> 'closed'),
               (SELECT count(*) FROM charge_sessions), (SELECT coalesce(sum(point_count), 0) FROM probes),
               (SELECT count(*) FROM traffic_aggregates), (SELECT coalesce(sum(\(vehicles)), 0) FROM traffic_aggregates),
               (SELECT count(*) FROM traffic_speed_buckets)
        """
    }

    /// The newest aggregates across tiles since a minute, each joined to its
    /// histogram buckets (one row per bucket, or one with NULL bucket):
    /// parameter 1 is the first minute, 2 the most aggregates. Rows come
    /// grouped by aggregate, newest minute first, then by tile.
    static func recentTrafficQuery(placeholder: (Int) -> String) -> String {
        """
        SELECT a.tile, a.minute_ms, a.point_count, a.vehicle_count, a.speed_sum_dkmh, b.bucket, b.point_count, a.speed_histogram
        FROM (SELECT tile, minute_ms, point_count, vehicle_count, speed_sum_dkmh, speed_histogram FROM traffic_aggregates
              WHERE minute_ms >= \(placeholder(1)) ORDER BY minute_ms DESC, tile LIMIT \(placeholder(2))) AS a
        LEFT JOIN traffic_speed_buckets AS b ON b.tile = a.tile AND b.minute_ms = a.minute_ms
        ORDER BY a.minute_ms DESC, a.tile, b.bucket
        """
    }
}
