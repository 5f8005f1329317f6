import Foundation
import Logging
import PostgresNIO
import SQLiteNIO
@testable import TelematicsStores
import TelematicsTestSupport
import TelematicsWire
import Testing

/// The pipeline's counters, kept in the stores with the data they describe.
@Suite("Pipeline counters in a store")
struct CounterTests {
    @Test("counters are added with their batch, together with what the store stored and found duplicated",
          arguments: StoreKind.allCases)
    func countersWithBatch(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            #expect(try await store.counters().isEmpty)
            let a = vin(1)
            let batch = StoreBatch(
                consentChanges: [consent(a, at: t0)],
                teleserviceCalls: [call(a, 1, items: [oil(.dueSoon)])],
                chargeSessions: [session(a, "s1")],
                probePoints: points("p-a", sequence: 1, count: 5, speedKmh: 50),
                counters: ["processed.teleservice_call": 1, "processed.charge_session": 1, "processed.rtti_probe": 1,
                           "processed.consent_state": 1, "dropped.rtti": 2, "alerts": 1, "hazards": 0])
            _ = try await store.apply(batch)
            var expected: [String: Int] = [
                "processed.teleservice_call": 1, "processed.charge_session": 1, "processed.rtti_probe": 1,
                "processed.consent_state": 1, "dropped.rtti": 2, "alerts": 1,
                "stored.teleservice_call": 1, "stored.charge_session": 1, "stored.probe_point": 5, "cases.opened": 1,
            ]
            #expect(try await store.counters() == expected)

            // A redelivery stores nothing, but is processed (and counted) again,
            // its records as duplicates.
            _ = try await store.apply(batch)
            for (name, value) in batch.counters where value != 0 { expected[name, default: 0] += value }
            expected["duplicates.teleservice_call"] = 1
            expected["duplicates.charge_session"] = 1
            expected["duplicates.probe_point"] = 5
            #expect(try await store.counters() == expected)

            // Closing the case, and consent deleting the session, are counted too.
            _ = try await store.apply(StoreBatch(
                consentChanges: [consent(a, at: t0 + 10_000, sequence: 2, chargingHistory: false)],
                teleserviceCalls: [call(a, 2, items: [oil(.ok)])]))
            let after = try await store.counters()
            #expect(after["cases.closed"] == 1)
            #expect(after["deleted.charge_session_by_consent"] == 1)
            #expect(after["stored.teleservice_call"] == 2)
        }
    }

    @Test("a batch of counters alone (only rejected records, say) is applied", arguments: StoreKind.allCases)
    func countersOnly(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            let only = StoreBatch(counters: ["rejected.bad_vin": 3, "processed.hv_warn_call": 0])
            #expect(!only.isEmpty)
            _ = try await store.apply(only)
            _ = try await store.apply(only)
            #expect(try await store.counters() == ["rejected.bad_vin": 6])
            #expect(StoreBatch(counters: ["alerts": 0]).isEmpty)
        }
    }

    @Test("a batch that fails midway adds none of its counters", arguments: StoreKind.allCases)
    func failedBatchCountsNothing(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            let a = vin(1)
            _ = try await store.apply(StoreBatch(teleserviceCalls: [call(a, 1)], counters: ["processed.teleservice_call": 1]))
            let before = try await store.counters()
            var batch = StoreBatch(
                teleserviceCalls: [call(a, 2, items: [oil(.overdue)])],
                probePoints: points("p-a", sequence: 1, count: 3, speedKmh: 40),
                counters: ["processed.teleservice_call": 1, "processed.rtti_probe": 1, "rejected.bad_field": 4])
            // An empty pseudonym breaks the schema's rule after the other writes.
            batch.probePoints.append(ProbePoint(pseudonym: "", sequence: 1, pointIndex: 99, tMs: t0, speedDkmh: 1, tile: 7))
            await #expect(throws: StoreError.self) { try await store.apply(batch) }
            #expect(try await store.counters() == before)
        }
    }
}

/// Upgrading databases written by the first schema version.
@Suite("Schema version 2")
struct SchemaUpgradeTests {
    @Test("a version-1 database is upgraded in place: its data kept, counters and the new queries working",
          arguments: StoreKind.allCases)
    func upgradeKeepsData(kind: StoreKind) async throws {
        let a = vin(1)
        let items = TechnicalData.json([oil(.dueSoon)])
        // What a version-1 store held: a consent, a call, its open case, a session.
        func rows(_ bool: (Bool) -> String, _ blob: String) -> [String] {
            [
                """
                INSERT INTO consents VALUES ('\(a)', \(bool(true)), \(bool(false)), \(bool(true)), \(bool(true)),
                    \(bool(true)), \(bool(false)), \(t0), 1)
                """,
                """
                INSERT INTO teleservice_calls VALUES ('\(a)', 1, \(t0 + 1000), 1, 10001, 12400, NULL, NULL, 'partner-old',
                    \(bool(false)), '\(items)', '[]')
                """,
                """
                INSERT INTO vehicle_states VALUES ('\(a)', \(t0 + 1000), 1, 10001, 12400, '\(items)', '[]')
                """,
                """
                INSERT INTO maintenance_cases (vin, need, state, service_partner_id, opened_at_ms, last_sequence, notifications)
                VALUES ('\(a)', 'service:TYPE_ENGINE_OIL', 'open', 'partner-old', \(t0 + 1000), 1, 1)
                """,
                """
                INSERT INTO charge_sessions VALUES ('\(a)', 's-old', 2, \(t0), \(t0 - 60_000), \(t0), 100, 900, 5000, 7000,
                    1, 1, 1, \(blob), 'key-1')
                """,
                // An aggregate of tile 7 with its histogram as bucket rows (before schema 4): 4 points at 30-35 km/h.
                "INSERT INTO traffic_aggregates VALUES (7, \(t0), 4, 1, 1280)",
                "INSERT INTO traffic_speed_buckets VALUES (7, \(t0), 6, 4)",
            ]
        }

        let database: V1Database
        switch kind {
        case .sqlite:
            let directory = FileManager.default.temporaryDirectory.appendingPathComponent("telematics-v1-\(UUID().uuidString)").path
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            database = .sqlite(directory)
            try await database.execute(
                ["CREATE TABLE schema_version (version INTEGER NOT NULL)"] + Schema.sqlite[0]
                    + ["INSERT INTO schema_version (version) VALUES (1)"] + rows({ $0 ? "1" : "0" }, "x'0102'"))
        case .postgres:
            database = .postgres(try await TestPostgres.url())
            try await database.execute(
                ["CREATE TABLE schema_version (version integer NOT NULL)"] + Schema.postgres[0]
                    + ["INSERT INTO schema_version (version) VALUES (1)"] + rows({ $0 ? "true" : "false" }, "'\\x0102'::bytea"))
        }
        do {
            try await checkUpgrade(database, vin: a)
        } catch {
            await database.remove()
            throw error
        }
        await database.remove()
    }

    private func checkUpgrade(_ database: V1Database, vin a: VIN) async throws {
        #expect(try await database.schemaVersion() == 1)

        let store = try await database.open()
        do {
            #expect(try await store.consent(for: [a])[a]?.recordedAtMs == t0)
            #expect(try await store.teleserviceCalls(a).map(\.sequence) == [1])
            #expect(try await store.vehicleState(a)?.mileageKm == 10001)
            #expect(try await store.chargeSessions(a).first?.sealedPosition == [1, 2])
            #expect(try await store.maintenanceCases(partner: "partner-old", openOnly: true, limit: 10).map(\.vin) == [a])
            #expect(try await store.counters().isEmpty)

            // The old open case goes on living: a call reporting the need gone closes it.
            let result = try await store.apply(StoreBatch(
                teleserviceCalls: [call(a, 3, items: [oil(.ok)])], counters: ["processed.teleservice_call": 1]))
            #expect(result.casesClosed == 1 && result.casesOpened == 0)
            #expect(try await store.counters() == ["processed.teleservice_call": 1, "stored.teleservice_call": 1, "cases.closed": 1])
            #expect(try await store.stats().teleserviceCalls == 2)
            // Version 3's probe rows work on the upgraded database.
            #expect(try await store.apply(StoreBatch(probePoints: points("p-up", sequence: 1, count: 3, speedKmh: 50))).probePointsInserted == 3)
            #expect(try await store.probePointCount() == 3)
            // Version 4: the old bucket rows and the row's own histogram add up.
            let minute = try #require(try await store.trafficAggregates(tile: 7, fromMinute: t0, toMinute: t0).first)
            #expect(minute.pointCount == 7 && minute.vehicleCount == 2)
            #expect(minute.histogram.total == 7)
            #expect(minute.histogram.counts[6] == 4 && minute.histogram.counts[10] == 3)
            #expect(try await store.trafficAggregates(sinceMinute: t0, limit: 10).first?.histogram == minute.histogram)
        } catch {
            await store.close()
            throw error
        }
        await store.close()
        #expect(try await database.schemaVersion() == Schema.version)

        // Opening the upgraded database again migrates nothing and keeps the counters.
        let again = try await database.open()
        let counters = try await again.counters()
        await again.close()
        #expect(counters["cases.closed"] == 1)
        #expect(try await database.schemaVersion() == Schema.version)
    }
}

/// Schema 6 keys the traffic tables by time first and stores SQLite's
/// histograms sparse: a version-5 database keeps its traffic data.
@Suite("Schema version 6")
struct SchemaSixUpgradeTests {
    @Test("a version-5 database keeps its aggregates (dense histograms made sparse), memberships (as vehicle sets) and probes; a redelivered old probe is still a duplicate",
          arguments: StoreKind.allCases)
    func upgradeKeepsTraffic(kind: StoreKind) async throws {
        // Tile 7, minute t0: 3 points at 50 km/h (bucket 10) of pseudonym p-old, sequence 1.
        let old = points("p-old", sequence: 1, count: 3, speedKmh: 50)
        // Format 1 (schema 3-5): 30 bytes a point, little-endian.
        let blob = old.flatMap { p -> [UInt8] in
            func le<T: FixedWidthInteger>(_ v: T) -> [UInt8] { withUnsafeBytes(of: v.littleEndian) { Array($0) } }
            return le(p.tMs) + le(p.latE7) + le(p.lonE7) + le(p.speedDkmh) + le(UInt16(p.headingDeg)) + le(p.tile)
        }
        var dense = [UInt8](repeating: 0, count: SpeedHistogram.bucketCount * 4)
        dense[10 * 4] = 3
        let hex = { (bytes: [UInt8]) in bytes.map { String(format: "%02x", $0) }.joined() }
        let database: V1Database
        switch kind {
        case .sqlite:
            let directory = FileManager.default.temporaryDirectory.appendingPathComponent("telematics-v5-\(UUID().uuidString)").path
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            database = .sqlite(directory)
            try await database.execute(
                ["CREATE TABLE schema_version (version INTEGER NOT NULL)"] + Schema.sqlite[0..<5].flatMap { $0 } + [
                    "INSERT INTO schema_version (version) VALUES (5)",
                    "INSERT INTO traffic_aggregates (tile, minute_ms, point_count, vehicle_count, speed_sum_dkmh, speed_histogram) VALUES (7, \(t0), 3, 1, 1500, x'\(hex(dense))')",
                    "INSERT INTO traffic_vehicles VALUES (7, \(t0), 'p-old')",
                    "INSERT INTO probes VALUES ('p-old', 1, \(t0), 3, x'\(hex(blob))')",
                ])
        case .postgres:
            database = .postgres(try await TestPostgres.url())
            var array = [Int](repeating: 0, count: SpeedHistogram.bucketCount)
            array[10] = 3
            try await database.execute(
                ["CREATE TABLE schema_version (version integer NOT NULL)"] + Schema.postgres[0..<5].flatMap { $0 } + [
                    "INSERT INTO schema_version (version) VALUES (5)",
                    "INSERT INTO traffic_aggregates (tile, minute_ms, point_count, vehicle_count, speed_sum_dkmh, speed_histogram) VALUES (7, \(t0), 3, 1, 1500, '{\(array.map(String.init).joined(separator: ","))}')",
                    "INSERT INTO traffic_vehicles VALUES (7, \(t0), 'p-old')",
                    "INSERT INTO probes VALUES ('p-old', 1, \(t0), 3, '\\x\(hex(blob))'::bytea)",
                ])
        }
        do {
            let store = try await database.open()
            do {
                let before = try #require(try await store.trafficAggregates(tile: 7, fromMinute: t0, toMinute: t0).first)
                #expect(before.pointCount == 3 && before.vehicleCount == 1 && before.histogram.counts[10] == 3 && before.histogram.total == 3)
                #expect(try await store.probePoints(pseudonym: "p-old") == old)
                // The old probe again: a duplicate, nothing added. A new vehicle in the same minute: counted once more.
                let again = try await store.apply(StoreBatch(probePoints: old))
                #expect(again.probePointsInserted == 0 && again.probePointsAlreadyPresent == 3)
                _ = try await store.apply(StoreBatch(probePoints: points("p-new", sequence: 1, count: 2, speedKmh: 30)))
                let after = try #require(try await store.trafficAggregates(tile: 7, fromMinute: t0, toMinute: t0).first)
                #expect(after.pointCount == 5 && after.vehicleCount == 2)
                #expect(after.histogram.counts[10] == 3 && after.histogram.counts[6] == 2 && after.histogram.total == 5)
                // Schema 7 moved the old membership into the aggregate's vehicle set:
                // p-old's next probe in that minute is not a new vehicle.
                _ = try await store.apply(StoreBatch(probePoints: points("p-old", sequence: 2, count: 1, speedKmh: 50)))
                let later = try #require(try await store.trafficAggregates(tile: 7, fromMinute: t0, toMinute: t0).first)
                #expect(later.pointCount == 6 && later.vehicleCount == 2)
                #expect(try await store.stats().trafficVehicles == 2)
            } catch {
                await store.close()
                throw error
            }
            await store.close()
            #expect(try await database.schemaVersion() == Schema.version)
        } catch {
            await database.remove()
            throw error
        }
        await database.remove()
    }

    @Test("probe points packed as differences (format 2) read back exactly, extremes included; format 1 still reads; malformed blobs are refused")
    func probePacking() throws {
        let extremes = [
            ProbePoint(pseudonym: "p", sequence: 9, pointIndex: 0, tMs: Int64.max, latE7: Int32.min, lonE7: Int32.max,
                       speedDkmh: UInt32.max, headingDeg: 359, tile: Int64.min),
            ProbePoint(pseudonym: "p", sequence: 9, pointIndex: 1, tMs: Int64.min, latE7: Int32.max, lonE7: Int32.min,
                       speedDkmh: 0, headingDeg: 0, tile: Int64.max),
        ]
        let usual = points("p", sequence: 9, count: 40, speedKmh: 87)
        for run in [extremes, usual, []] {
            #expect(ProbePacking.unpack(ProbePacking.pack(run), format: 2, pseudonym: "p", sequence: 9) == run)
        }
        #expect(ProbePacking.pack(usual).count <= usual.count * 10, "about 8 bytes a point: \(ProbePacking.pack(usual).count)")
        let fixed: [UInt8] = [UInt8](repeating: 0, count: 30)
        #expect(ProbePacking.unpack(fixed, format: 1, pseudonym: "p", sequence: 9)?.count == 1)
        #expect(ProbePacking.unpack([0x80], format: 2, pseudonym: "p", sequence: 9) == nil, "cut short")
        #expect(ProbePacking.unpack([0, 0, 0, 0, 0], format: 2, pseudonym: "p", sequence: 9) == nil, "a point without its heading")
        #expect(ProbePacking.unpack(ProbePacking.pack(usual), format: 3, pseudonym: "p", sequence: 9) == nil, "unknown format")
    }

    @Test("the sparse histogram form reads back what it wrote, and refuses malformed blobs")
    func sparseHistogram() throws {
        var h = SpeedHistogram()
        h.add(bucket: 0, count: 1)
        h.add(bucket: 6, count: 300)
        h.add(bucket: SpeedHistogram.overflowBucket, count: 70_000)
        #expect(h.packed == [0, 1, 6, 0xAC, 0x02, 60, 0xF0, 0xA2, 0x04])
        #expect(SpeedHistogram(packed: h.packed) == h)
        #expect(SpeedHistogram(packed: []) == SpeedHistogram())
        #expect(SpeedHistogram(packed: [6, 1, 0, 1]) == nil, "buckets out of order")
        #expect(SpeedHistogram(packed: [61, 1]) == nil, "bucket out of range")
        #expect(SpeedHistogram(packed: [6, 0x80]) == nil, "count cut short")
        #expect(SpeedHistogram.fromDense([UInt8](repeating: 0, count: 10)) == nil)
    }
}

/// A database written directly, as an older version of the program left it.
enum V1Database {
    case sqlite(String)
    case postgres(String)

    /// Runs `statements`; on SQLite, in `file` of the data directory.
    func execute(_ statements: [String], file: String = SQLiteStore.fileName) async throws {
        switch self {
        case .sqlite(let directory):
            let connection = try await SQLiteConnection.open(
                storage: .file(path: (directory as NSString).appendingPathComponent(file)))
            do {
                for sql in statements { _ = try await connection.query(sql) }
            } catch {
                try? await connection.close()
                throw error
            }
            try await connection.close()
        case .postgres(let url):
            try await withPostgres(url) { connection, logger in
                for sql in statements { try await connection.query(PostgresQuery(unsafeSQL: sql), logger: logger) }
            }
        }
    }

    func schemaVersion() async throws -> Int {
        switch self {
        case .sqlite(let directory):
            let connection = try await SQLiteConnection.open(
                storage: .file(path: (directory as NSString).appendingPathComponent(SQLiteStore.fileName)))
            let version = try await connection.query("SELECT max(version) FROM schema_version").first?.columns.first?.data.integer
            try await connection.close()
            return version ?? 0
        case .postgres(let url):
            var version = 0
            try await withPostgres(url) { connection, logger in
                for try await v in try await connection.query("SELECT max(version) FROM schema_version", logger: logger)
                    .decode(Int32.self)
                {
                    version = Int(v)
                }
            }
            return version
        }
    }

    func open() async throws -> any TelematicsStore {
        switch self {
        case .sqlite(let directory): try await SQLiteStore(directory: directory)
        case .postgres(let url): try await PostgresStore(url: url)
        }
    }

    func remove() async {
        switch self {
        case .sqlite(let directory): try? FileManager.default.removeItem(atPath: directory)
        case .postgres(let url): await TestPostgres.dropDatabase(url: url)
        }
    }

    private func withPostgres(_ url: String, _ body: (PostgresConnection, Logger) async throws -> Void) async throws {
        guard let c = URLComponents(string: url) else { throw CocoaError(.fileReadInvalidFileName) }
        let logger = Logger(label: "telematics.tests.v1")
        let connection = try await PostgresConnection.connect(
            configuration: .init(
                host: c.host ?? "127.0.0.1", port: c.port ?? 5432, username: c.user ?? "postgres", password: c.password,
                database: String(c.path.dropFirst()), tls: .disable),
            id: 1, logger: logger)
        do {
            try await body(connection, logger)
        } catch {
            try? await connection.close()
            throw error
        }
        try await connection.close()
    }
}

/// Reads across vehicles and tiles for workshops, apps and operators.
@Suite("Queries across vehicles and tiles")
struct CrossQueryTests {
    @Test("maintenance cases by service partner, open only or all, newest first, limited", arguments: StoreKind.allCases)
    func casesByPartner(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            let a = vin(1), b = vin(2), c = vin(3)
            _ = try await store.apply(StoreBatch(teleserviceCalls: [
                call(a, 1, items: [oil(.dueSoon)], partner: "ws-north"),
                call(b, 1, items: [oil(.overdue)], controls: [CheckControl(code: 9, severity: .critical)], partner: "ws-north"),
                call(c, 1, items: [oil(.dueSoon)], partner: "ws-south"),
            ]))
            // a's need is gone: its case closes.
            _ = try await store.apply(StoreBatch(teleserviceCalls: [call(a, 2, items: [oil(.ok)], partner: "ws-north")]))

            let north = try await store.maintenanceCases(partner: "ws-north", openOnly: false, limit: 10)
            #expect(north.count == 3)
            #expect(north.map(\.id) == north.map(\.id).sorted { ($0 ?? 0) > ($1 ?? 0) })
            #expect(Set(north.map(\.vin)) == [a, b])
            let northOpen = try await store.maintenanceCases(partner: "ws-north", openOnly: true, limit: 10)
            #expect(northOpen.map(\.vin) == [b, b])
            #expect(northOpen.allSatisfy { $0.state != .closed })
            #expect(Set(northOpen.map(\.need)) == [.service(.engineOil), .checkControl(code: 9)])

            let open = try await store.maintenanceCases(partner: nil, openOnly: true, limit: 10)
            #expect(open.count == 3 && Set(open.map(\.vin)) == [b, c])
            #expect(try await store.maintenanceCases(partner: nil, openOnly: false, limit: 2).count == 2)
            #expect(try await store.maintenanceCases(partner: nil, openOnly: false, limit: 0).isEmpty)
            #expect(try await store.maintenanceCases(partner: "nobody", openOnly: false, limit: 10).isEmpty)
        }
    }

    @Test("traffic aggregates across tiles since a minute, newest first, with histograms, limited",
          arguments: StoreKind.allCases)
    func trafficAcrossTiles(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            let m0 = t0, m1 = t0 + 60_000, m2 = t0 + 120_000
            _ = try await store.apply(StoreBatch(probePoints:
                points("p1", sequence: 1, count: 10, speedKmh: 30, tile: 5, startMs: m0)
                + points("p1", sequence: 2, count: 10, speedKmh: 50, tile: 5, startMs: m1)
                + points("p2", sequence: 1, count: 10, speedKmh: 90, tile: 6, startMs: m1)
                + points("p3", sequence: 1, count: 4, speedKmh: 120, tile: 6, startMs: m2)
                + points("p4", sequence: 1, count: 6, speedKmh: 100, tile: 6, startMs: m2)))

            let all = try await store.trafficAggregates(sinceMinute: m0, limit: 10)
            #expect(all.map { [$0.minuteMs, $0.tile] } == [[m2, 6], [m1, 5], [m1, 6], [m0, 5]])
            let newest = try #require(all.first)
            #expect(newest.pointCount == 10 && newest.vehicleCount == 2)
            #expect(newest.meanSpeedKmh == 108)
            #expect(newest.histogram.total == 10)
            // The per-tile read sees the same aggregate, histogram included.
            #expect(try await store.trafficAggregates(tile: 6, fromMinute: m2, toMinute: m2) == [newest])
            #expect(all[1].meanSpeedKmh == 50 && all[2].meanSpeedKmh == 90)

            #expect(try await store.trafficAggregates(sinceMinute: m1, limit: 10).count == 3)
            #expect(try await store.trafficAggregates(sinceMinute: m0, limit: 2).map(\.minuteMs) == [m2, m1])
            #expect(try await store.trafficAggregates(sinceMinute: m2 + 60_000, limit: 10).isEmpty)
        }
    }
}
