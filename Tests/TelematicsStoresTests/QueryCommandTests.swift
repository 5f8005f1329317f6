import Foundation
import TelematicsStores
import TelematicsTestSupport
import TelematicsWire
import Testing

/// `telematics query` as a process, against a SQLite store filled through
/// the store API.
@Suite("The query command")
struct QueryCommandTests {
    /// A data directory with two vehicles: `vin(1)` (consent, an open oil
    /// case at ws-north, a session with a sealed position) and `vin(2)` (an
    /// open case at ws-south closed again, a session without position),
    /// probe points on tile 7, and the counters of two routed batches.
    static func filledDirectory() async throws -> String {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("telematics-query-\(UUID().uuidString)").path
        let store = try await SQLiteStore(directory: directory)
        let a = vin(1), b = vin(2)
        var unsealed = session(b, "b-1")
        unsealed.sealedPosition = nil
        unsealed.keyID = nil
        _ = try await store.apply(StoreBatch(
            consentChanges: [consent(a, at: t0)],
            teleserviceCalls: [
                call(a, 1, items: [oil(.dueSoon)], partner: "ws-north"),
                call(b, 1, items: [oil(.overdue)], partner: "ws-south"),
            ],
            chargeSessions: [session(a, "a-1"), unsealed],
            probePoints: points("p-1", sequence: 1, count: 6, speedKmh: 40),
            counters: ["processed.teleservice_call": 2, "processed.charge_session": 2, "processed.rtti_probe": 1,
                       "processed.consent_state": 1, "processed.hv_warn_call": 1, "alerts": 1, "rejected.bad_vin": 2,
                       "dropped.rtti": 1]))
        _ = try await store.apply(StoreBatch(
            teleserviceCalls: [call(b, 2, items: [oil(.ok)], partner: "ws-south")],
            counters: ["processed.teleservice_call": 1]))
        await store.close()
        return directory
    }

    /// The one JSON object `text` holds.
    func object(_ text: String) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any], "not a JSON object: \(text)")
    }

    /// One JSON object per non-empty line.
    func lines(_ text: String) throws -> [[String: Any]] {
        try text.split(separator: "\n").map { try object(String($0)) }
    }

    @Test("query stats prints the row counts and the counters grouped by name")
    func stats() async throws {
        let directory = try await Self.filledDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let run = try TelematicsBinary.run(["query", "stats", "--sqlite", directory])
        #expect(run.status == 0, "\(run.stderr)")
        #expect(run.stdout.split(separator: "\n").count == 1)
        let stats = try object(run.stdout)
        let rows = try #require(stats["rows"] as? [String: Int])
        #expect(rows["teleservice_calls"] == 3 && rows["maintenance_cases"] == 2 && rows["open_maintenance_cases"] == 1)
        #expect(rows["charge_sessions"] == 2 && rows["probe_points"] == 6 && rows["consents"] == 1)
        let processed = try #require(stats["processed"] as? [String: Int])
        #expect(processed == ["teleservice_call": 3, "hv_warn_call": 1, "rtti_probe": 1, "charge_session": 2, "consent_state": 1])
        #expect((stats["stored"] as? [String: Int]) == ["teleservice_call": 3, "charge_session": 2, "probe_point": 6])
        #expect((stats["duplicates"] as? [String: Int]) == ["teleservice_call": 0, "charge_session": 0, "probe_point": 0])
        #expect((stats["cases"] as? [String: Int]) == ["opened": 2, "updated": 0, "closed": 1])
        #expect((stats["rejected"] as? [String: Int])?["bad_vin"] == 2)
        #expect((stats["rejected"] as? [String: Int])?["truncated"] == 0)
        #expect((stats["dropped"] as? [String: Int]) == ["smart_maintenance": 0, "teleservices": 0, "charging_history": 0, "rtti": 1])
        #expect(stats["alerts"] as? Int == 1 && stats["hazards"] as? Int == 0)
    }

    @Test("query vehicle prints one object: state, calls, cases, consent, and sessions without their sealed bytes")
    func vehicle() async throws {
        let directory = try await Self.filledDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let a = vin(1)
        let run = try TelematicsBinary.run(["query", "vehicle", a.description, "--sqlite", directory])
        #expect(run.status == 0, "\(run.stderr)")
        let v = try object(run.stdout)
        #expect(v["vin"] as? String == a.description)
        let state = try #require(v["technical_state"] as? [String: Any])
        #expect(state["mileage_km"] as? Int == 10_001)
        let item = try #require((state["service_items"] as? [[String: Any]])?.first)
        #expect(item["type"] as? String == "TYPE_ENGINE_OIL" && item["status"] as? String == "STATUS_DUE_SOON")
        let calls = try #require(v["teleservice_calls"] as? [[String: Any]])
        #expect(calls.count == 1)
        #expect(calls.first?["trigger"] as? String == "TRIGGER_STATE_CHANGE")
        #expect(calls.first?["recorded_at_ms"] as? Int == Int(t0 + 1000))
        let open = try #require(v["open_cases"] as? [[String: Any]])
        #expect(open.map { $0["need"] as? String } == ["service:TYPE_ENGINE_OIL"])
        #expect(open.first?["service_partner_id"] as? String == "ws-north" && open.first?["state"] as? String == "open")
        #expect((v["closed_cases"] as? [Any])?.isEmpty == true)
        #expect((v["consent"] as? [String: Any])?["charging_history"] as? Bool == true)
        let sessions = try #require(v["charge_sessions"] as? [[String: Any]])
        #expect(sessions.count == 1)
        #expect(sessions.first?["position_sealed"] as? Bool == true && sessions.first?["key_id"] as? String == "key-2025")
        #expect(sessions.first?["current"] as? String == "CURRENT_AC" && sessions.first?["site"] as? String == "SITE_HOME")
        #expect(!run.stdout.contains("sealed_position"))

        // The other vehicle: its case closed, its session without position.
        let other = try object(try TelematicsBinary.run(["query", "vehicle", vin(2).description, "--sqlite", directory]).stdout)
        #expect((other["open_cases"] as? [Any])?.isEmpty == true)
        #expect((other["closed_cases"] as? [[String: Any]])?.first?["closed_at_ms"] as? Int == Int(t0 + 2000))
        #expect(other["consent"] is NSNull)
        let charging = try lines(try TelematicsBinary.run(["query", "charging", vin(2).description, "--sqlite", directory]).stdout)
        #expect(charging.count == 1)
        #expect(charging.first?["position_sealed"] as? Bool == false && charging.first?["key_id"] is NSNull)
    }

    @Test("query cases --open lists the open cases as JSON Lines, --partner narrows them to one workshop")
    func cases() async throws {
        let directory = try await Self.filledDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let open = try TelematicsBinary.run(["query", "cases", "--open", "--sqlite", directory])
        #expect(open.status == 0, "\(open.stderr)")
        let openCases = try lines(open.stdout)
        #expect(openCases.map { $0["vin"] as? String } == [vin(1).description])
        #expect(openCases.first?["updated_at_ms"] is NSNull)

        let all = try lines(try TelematicsBinary.run(["query", "cases", "--sqlite", directory]).stdout)
        #expect(all.count == 2)
        let south = try lines(try TelematicsBinary.run(["query", "cases", "--partner", "ws-south", "--sqlite", directory]).stdout)
        #expect(south.map { $0["state"] as? String } == ["closed"])
        #expect(try TelematicsBinary.run(["query", "cases", "--limit", "1", "--sqlite", directory]).stdout.split(separator: "\n").count == 1)
    }

    @Test("query traffic prints count, vehicles, mean and p85 speed per tile and minute")
    func traffic() async throws {
        let directory = try await Self.filledDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let run = try TelematicsBinary.run(["query", "traffic", "--since-ms", String(t0), "--sqlite", directory])
        #expect(run.status == 0, "\(run.stderr)")
        let rows = try lines(run.stdout)
        #expect(rows.count == 1)
        #expect(rows.first?["tile"] as? Int == 7 && rows.first?["minute_ms"] as? Int == Int(t0))
        #expect(rows.first?["count"] as? Int == 6 && rows.first?["vehicles"] as? Int == 1)
        #expect(rows.first?["mean_speed_kmh"] as? Double == 40)
        #expect((rows.first?["p85_speed_kmh"] as? Double).map { $0 >= 40 && $0 <= 45 } == true)
        let tile = try lines(try TelematicsBinary.run(["query", "traffic", "--tile", "7", "--sqlite", directory]).stdout)
        #expect(tile.count == 1)
        #expect(try TelematicsBinary.run(["query", "traffic", "--tile", "8", "--sqlite", directory]).stdout.isEmpty)
        // Minutes ago: the fixture's minute (2025) is long past.
        #expect(try TelematicsBinary.run(["query", "traffic", "--since", "5", "--sqlite", directory]).stdout.isEmpty)
    }

    @Test("a bad VIN, a directory without a store, or an unreachable server is a clear message and exit status 1")
    func failures() async throws {
        let directory = try await Self.filledDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let badVIN = try TelematicsBinary.run(["query", "vehicle", "WMW-NOT-A-VIN", "--sqlite", directory])
        #expect(badVIN.status == 1)
        #expect(badVIN.stdout.isEmpty)
        #expect(badVIN.stderr.contains("not a VIN: \"WMW-NOT-A-VIN\""))
        #expect(try TelematicsBinary.run(["query", "charging", "IOQ", "--sqlite", directory]).status == 1)

        let missing = FileManager.default.temporaryDirectory.appendingPathComponent("telematics-none-\(UUID().uuidString)").path
        let noStore = try TelematicsBinary.run(["query", "stats", "--sqlite", missing])
        #expect(noStore.status == 1)
        #expect(noStore.stderr.contains("no store in \(missing)"))
        #expect(!FileManager.default.fileExists(atPath: missing), "a query must not create a store")

        let unreachable = try TelematicsBinary.run(["query", "cases", "--postgres", "postgres://u:secret@127.0.0.1:1/db"])
        #expect(unreachable.status == 1)
        #expect(unreachable.stderr.contains("postgres store: open failed"))
        #expect(!unreachable.stderr.contains("secret"))
    }
}
