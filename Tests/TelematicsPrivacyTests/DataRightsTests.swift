import CallCentre
import Foundation
import HTTPTypes
import HummingbirdTesting
import Prometheus
import TelematicsPipeline
import TelematicsPrivacy
import TelematicsStores
import TelematicsTestSupport
import TelematicsWire
import Testing

@Suite("A vehicle's export and erasure; key rotation")
struct DataRightsTests {
    /// Two vehicles with calls, a case, sessions, probes of today and yesterday, and alerts.
    static func populate(_ store: any TelematicsStore, _ alerts: any AlertStore, owner: VIN, other: VIN, now: Int64, secrets: PipelineSecrets) async throws {
        var points: [ProbePoint] = []
        for v in [owner, other] {
            points += probe(v, sequence: 1, at: now - 20 * hourMs, secrets: secrets)  // yesterday's pseudonym
            points += probe(v, sequence: 2, at: now - hourMs, secrets: secrets)
        }
        _ = try await store.apply(StoreBatch(
            consentChanges: [ConsentChange(vin: owner, state: .defaults, recordedAtMs: now - dayMs, sequence: 1)],
            teleserviceCalls: [owner, other].flatMap { [teleserviceCall($0, 2, at: now - 2 * hourMs, items: [oil(.overdue)])] },
            chargeSessions: [
                try chargeSession(owner, "s-1", endedAt: now - 3 * hourMs, secrets: secrets),
                try chargeSession(owner, "s-2", endedAt: now - 2 * hourMs, secrets: secrets, position: nil),
                try chargeSession(other, "s-1", endedAt: now - 3 * hourMs, secrets: secrets),
            ],
            probePoints: points))
        _ = try await alerts.upsert(
            [hvAlert(owner, event: "e-1", at: now - hourMs), hvAlert(owner, event: "e-2", at: now), hvAlert(other, event: "e-1", at: now)],
            receivedAtMs: now)
        _ = try await alerts.acknowledge(id: "\(owner)/e-1", by: "anna", atMs: now)
    }

    @Test("export holds everything of the vehicle from every store; erase removes all but what RULES.md keeps; export then shows nothing erasable",
          arguments: StoreKind.allCases)
    func exportEraseExport(kind: StoreKind) async throws {
        try await withStores(kind) { store, alerts in
            let secrets = testSecrets()
            let now = t0 + 10 * dayMs + 5 * hourMs
            let owner = testVIN(10), other = testVIN(11)
            try await Self.populate(store, alerts, owner: owner, other: other, now: now, secrets: secrets)
            let rights = DataRights(store: store, alerts: alerts, secrets: secrets, policy: RetentionPolicy(), now: { now })

            let before = try parse(try await rights.export(owner))
            #expect(before["vin"] as? String == owner.description)
            #expect((before["consent"] as? [String: Any])?["rtti"] as? Bool == true)
            #expect((before["technical_state"] as? [String: Any])?["mileage_km"] as? Int == 20_002)
            #expect((before["teleservice_calls"] as? [Any])?.count == 1 && (before["maintenance_cases"] as? [Any])?.count == 1)
            let sessions = try #require(before["charge_sessions"] as? [[String: Any]])
            #expect(sessions.count == 2)
            let opened = try #require(sessions.first { $0["session_id"] as? String == "s-1" }?["position"] as? [String: Any])
            #expect(opened["lat_e7"] as? Int == 556_000_001 && opened["lon_e7"] as? Int == 125_000_002, "the sealed position is opened")
            let probes = try #require(before["traffic_probes"] as? [[String: Any]])
            #expect(probes.count == 2 && probes.allSatisfy { ($0["points"] as? [Any])?.count == 5 }, "today's and yesterday's pseudonyms")
            #expect((before["callcentre_alerts"] as? [Any])?.count == 2)
            #expect(!before.description.contains(other.description), "nothing of the other vehicle")

            let erased = try parse(try await rights.erase(owner))
            let stores = try #require(erased["stores"] as? [String: [String: Any]])
            let deleted = try #require(stores["pipeline"]?["deleted"] as? [String: Int])
            #expect(deleted == ["teleservice_calls": 1, "maintenance_cases": 1, "charge_sessions": 2, "probes": 2, "traffic_vehicles": 2])
            let kept = try #require(stores["pipeline"]?["kept"] as? [String: [String: Any]])
            #expect(Set(kept.keys) == ["vehicle_states", "consents"])
            #expect((kept["vehicle_states"]?["reason"] as? String)?.contains("vehicle's life") == true)
            #expect(stores["alerts"]?["deleted"] as? [String: Int] == ["callcentre_alerts": 1])
            #expect(((stores["alerts"]?["kept"] as? [String: [String: Any]])?["callcentre_alerts"]?["rows"] as? Int) == 1, "the open alert stays")

            let after = try parse(try await rights.export(owner))
            for key in ["teleservice_calls", "maintenance_cases", "charge_sessions", "traffic_probes"] {
                #expect((after[key] as? [Any])?.isEmpty == true, "\(key) after erase")
            }
            #expect((after["callcentre_alerts"] as? [[String: Any]])?.count == 1)
            #expect(after["technical_state"] is [String: Any] && after["consent"] is [String: Any])

            // The other vehicle is untouched, and a second erase is safe and deletes nothing.
            #expect(try await store.teleserviceCalls(other).count == 1)
            #expect(try await store.chargeSessions(other).count == 1)
            #expect(try await store.probePointCount() == 10)
            let again = try parse(try await rights.erase(owner))
            #expect(((again["stores"] as? [String: [String: Any]])?["pipeline"]?["deleted"] as? [String: Int])?.isEmpty == true)
            let counters = try await store.counters()
            #expect(counters["erased.vehicles"] == 2 && counters["erased.charge_sessions"] == 2 && counters["erased.probes"] == 2)
        }
    }

    @Test("an erase that meets a store error leaves nothing half-done, and a retry then completes")
    func eraseIsAtomic() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("tm-erase-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let secrets = testSecrets()
        let now = t0 + 3 * hourMs
        let owner = testVIN(20), other = testVIN(21)
        var store = try await SQLiteStore(directory: directory)
        let alerts = try await SQLiteAlertStore(directory: directory)
        try await Self.populate(store, alerts, owner: owner, other: other, now: now, secrets: secrets)
        await store.close()
        // Deleting charge sessions fails (the third statement of the erase).
        let file = directory + "/" + SQLiteStore.fileName
        _ = try sqlite3(file, "CREATE TRIGGER refuse BEFORE DELETE ON charge_sessions BEGIN SELECT RAISE(ABORT, 'injected failure'); END;")
        store = try await SQLiteStore(directory: directory)
        let rights = DataRights(store: store, alerts: nil, secrets: secrets, policy: RetentionPolicy(), now: { now })
        await #expect(throws: StoreError.self) { try await rights.erase(owner) }
        #expect(try await store.teleserviceCalls(owner).count == 1)
        #expect(try await store.maintenanceCases(owner, includeClosed: true).count == 1,
                "what the erase deleted before the failure is back")
        #expect(try await store.counters()["erased.vehicles"] == nil)
        await store.close()
        _ = try sqlite3(file, "DROP TRIGGER refuse;")
        store = try await SQLiteStore(directory: directory)
        let retry = DataRights(store: store, alerts: alerts, secrets: secrets, policy: RetentionPolicy(), now: { now })
        _ = try await retry.erase(owner)
        let after = try parse(try await retry.export(owner))
        #expect((after["charge_sessions"] as? [Any])?.isEmpty == true && (after["teleservice_calls"] as? [Any])?.isEmpty == true)
        await store.close()
        await alerts.close()
    }

    @Test("rotation re-seals every session with the current key in batches, seals the plain ids of older rows, leaves unreadable ones, and is safe to repeat",
          arguments: StoreKind.allCases)
    func keyRotation(kind: StoreKind) async throws {
        try await withStores(kind) { store, _ in
            let old = testSecrets(current: "k1")
            let positions = (0..<7).map { Position(latE7: 550_000_000 + Int32($0), lonE7: 120_000_000 - Int32($0)) }
            var sessions = try positions.enumerated().map { i, p in try chargeSession(testVIN(30 + i), "s-\(i)", endedAt: t0, secrets: old, position: p) }
            // A row of schema 4: the id in the clear, the position bound to it.
            let legacyVIN = testVIN(41)
            let legacyPosition = Position(latE7: 10, lonE7: 20)
            let oldSealer = PositionSealer(keyID: "k1", keys: old.sealingKeys)
            sessions.append(ChargeSessionRecord(
                vin: legacyVIN, sessionID: "plain-1", sequence: 1, recordedAtMs: t0, endedAtMs: t0,
                sealedPosition: try oldSealer.seal(legacyPosition, vin: legacyVIN, sessionID: "plain-1"), keyID: "k1"))
            // One sealed with a key nobody has any more.
            let lost = PipelineSecrets(pseudonymKey: old.pseudonymKey, sealingKeyID: "k0", sealingKeys: ["k0": .init(size: .bits256)])
            sessions.append(try chargeSession(testVIN(40), "s-lost", endedAt: t0, secrets: lost))
            _ = try await store.apply(StoreBatch(chargeSessions: sessions))

            let current = testSecrets(current: "k2")
            var rotation = KeyRotation(store: store, secrets: current)
            rotation.batchSize = 3
            let outcome = try await rotation.run()
            #expect(outcome.resealed == 8 && outcome.unreadable == ["k0": 1])
            #expect(try await store.sessionsToReseal(keyID: "k2", limit: 100).map(\.keyID) == ["k0"])
            let sealer = PositionSealer(keyID: "k2", keys: ["k2": current.sealingKeys["k2"]!])
            let references = SessionReferences(pseudonymKey: current.pseudonymKey)
            for (i, p) in positions.enumerated() {
                let stored = try #require(try await store.chargeSessions(testVIN(30 + i)).first)
                #expect(stored.keyID == "k2")
                #expect(try sealer.open(stored.sealedPosition!, keyID: "k2", vin: stored.vin, sessionID: stored.sessionID) == p)
                #expect(try sealer.openSessionID(stored.sealedSessionID!, keyID: "k2", vin: stored.vin, reference: stored.sessionID) == "s-\(i)")
            }
            let legacy = try #require(try await store.chargeSessions(legacyVIN).first)
            #expect(legacy.sessionID == references.reference(vin: legacyVIN, sessionID: "plain-1"), "the plain id is replaced by its reference")
            #expect(try sealer.openSessionID(legacy.sealedSessionID!, keyID: "k2", vin: legacyVIN, reference: legacy.sessionID) == "plain-1")
            #expect(try sealer.open(legacy.sealedPosition!, keyID: "k2", vin: legacyVIN, sessionID: legacy.sessionID) == legacyPosition)
            #expect(try await rotation.run().resealed == 0)
            #expect(try await store.counters()["keys.resealed_sessions"] == 8)
        }
    }

    @Test("keys: generated owner-only on first use, a new key becomes current, configured key files win, bad files are named")
    func keyFiles() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("tm-keys-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var announced: [String] = []
        let first = try PipelineSecrets.load(directory: directory) { announced.append($0) }
        #expect(first.sealingKeyID == "k1" && announced.count == 2)
        let mode = try FileManager.default.attributesOfItem(atPath: directory + "/charging-k1.key")[.posixPermissions] as? Int
        #expect(mode == 0o600)
        let again = try PipelineSecrets.load(directory: directory) { announced.append($0) }
        #expect(announced.count == 2, "nothing generated the second time")
        #expect(again.pseudonymKey == first.pseudonymKey)

        #expect(try PipelineSecrets.newChargingKey(in: directory) { _ in } == "k2")
        let rotated = try PipelineSecrets.load(directory: directory) { _ in }
        #expect(rotated.sealingKeyID == "k2" && Set(rotated.sealingKeys.keys) == ["k1", "k2"])

        let file = directory + "/mine.key"
        FileManager.default.createFile(atPath: file, contents: Data(repeating: 9, count: 32))
        let configured = try PipelineSecrets.load(directory: directory, pseudonymKeyFile: file, chargingKeys: ["prod-1=\(file)"]) { _ in }
        #expect(configured.sealingKeyID == "prod-1" && configured.pseudonymKey != rotated.pseudonymKey, "the only configured key is current")
        let explicit = try PipelineSecrets.load(directory: directory, chargingKeys: ["prod-1=\(file)"], activeKeyID: "prod-1") { _ in }
        #expect(explicit.sealingKeyID == "prod-1" && Array(explicit.sealingKeys.keys) == ["prod-1"])
        FileManager.default.createFile(atPath: directory + "/short.key", contents: Data(repeating: 1, count: 5))
        #expect(throws: SecretsError.self) { try PipelineSecrets.load(directory: directory, pseudonymKeyFile: directory + "/short.key") { _ in } }
        #expect(throws: SecretsError.self) { try PipelineSecrets.load(directory: directory, chargingKeys: ["x=\(file)"], activeKeyID: "y") { _ in } }
    }

    @Test("the console's privacy API: a privacy officer exports and erases; an agent gets 403, no token 401, a bad VIN 400")
    func consoleAPI() async throws {
        try await withStores(.sqlite) { store, alerts in
            let secrets = testSecrets()
            let now = t0 + 5 * hourMs
            let owner = testVIN(50)
            try await Self.populate(store, alerts, owner: owner, other: testVIN(51), now: now, secrets: secrets)
            let registry = PrometheusCollectorRegistry()
            let desk = AlertDesk(store: alerts, clock: { now }, publish: { _ in }, metrics: PrometheusMetricsFactory(registry: registry))
            var configuration = ConsoleConfiguration(host: "127.0.0.1", port: 0, agents: ["agent-token": "anna"])
            configuration.privacyOfficers = ["officer-token": "olga"]
            var console = ConsoleServer(desk: desk, configuration: configuration, registry: registry)
            console.privacy = DataRights(store: store, alerts: alerts, secrets: secrets, policy: RetentionPolicy(), now: { now })
            try await console.application().test(.router) { client in
                let export = "/api/privacy/\(owner)/export"
                #expect(try await client.execute(uri: export, method: .get).status == .unauthorized)
                #expect(try await client.execute(uri: export, method: .get, headers: [.authorization: "Bearer agent-token"]).status == .forbidden)
                #expect(try await client.execute(uri: "/api/privacy/NOT-A-VIN/export", method: .get, headers: [.authorization: "Bearer officer-token"]).status == .badRequest)
                let ok = try await client.execute(uri: export, method: .get, headers: [.authorization: "Bearer officer-token"])
                #expect(ok.status == .ok)
                let document = try parse(String(buffer: ok.body))
                #expect((document["charge_sessions"] as? [Any])?.count == 2)

                let erase = "/api/privacy/\(owner)/erase"
                #expect(try await client.execute(uri: erase, method: .post, headers: [.authorization: "Bearer agent-token"]).status == .forbidden)
                #expect(try await store.chargeSessions(owner).count == 2, "a refused erase changes nothing")
                let erased = try await client.execute(uri: erase, method: .post, headers: [.authorization: "Bearer officer-token"])
                #expect(erased.status == .ok)
                #expect(try await store.chargeSessions(owner).isEmpty)
                #expect(try await store.teleserviceCalls(owner).isEmpty)
            }
        }
    }
}
