import Crypto
import Foundation
import TelematicsTestSupport
import Testing
import TelematicsKafka
import TelematicsPipeline
import TelematicsStores
import TelematicsWire

@Suite("Pipeline: RULES.md end to end (mock cluster, SQLite)", .serialized)
struct PipelineRulesTests {
    @Test("Smart Maintenance calls need consent; with teleservices off only breakdown and accident calls are processed")
    func teleserviceConsent() async throws {
        let h = try PipelineHarness()
        var a = VehicleScript("WMW11DJ0X02A00001")
        var b = VehicleScript("WMW11DJ0X02A00002")
        let store = try await h.openStore()
        // Consent applies to what is processed after it: each step is its own run.
        try await h.produce([a.record(VehicleScript.call(.smartMaintenance)), b.record(VehicleScript.consent(teleservices: false))])
        let first = try await h.runLane(until: 2, store: store)  // a's call dropped: smart_maintenance defaults to off
        try await h.produce([a.record(VehicleScript.consent(smartMaintenance: true))])
        try await h.runLane(until: 1, store: store)
        try await h.produce([
            a.record(VehicleScript.call(.smartMaintenance)),  // stored
            b.record(VehicleScript.call(.monthly)),  // dropped
            b.record(VehicleScript.call(.breakdown, position: Position(latE7: 556_000_000, lonE7: 125_000_000))),  // stored + P1 alert
        ])
        let s = try await h.runLane(until: 3, store: store)
        #expect(first.tally.droppedForConsent["smart_maintenance"] == 1)
        #expect(s.tally.droppedForConsent["teleservices"] == 1)
        #expect(try await store.teleserviceCalls(a.vin).map(\.sequence) == [3])
        #expect(try await store.teleserviceCalls(b.vin).map(\.trigger) == [Trigger.breakdown.rawValue])
        let alerts = try await h.read(h.topics.alerts, expecting: 1)
        #expect(alerts.count == 1)
        let alert = try JSONDecoder().decode(CallCentreAlert.self, from: Data(alerts[0].value))
        #expect(alert.priority == "P1" && alert.type == "breakdown" && alert.vin == b.vin.description && alert.position?.latE7 == 556_000_000)
        await store.close()
    }

    @Test("an HV warn call always reaches callcentre.alerts as P0, even with every consent off")
    func hvWarnNeverDropped() async throws {
        let h = try PipelineHarness()
        var v = VehicleScript("WMW11DJ0X02A00003")
        try await h.produce([v.record(VehicleScript.consent(teleservices: false, chargingHistory: false, chargingLocation: false, rtti: false, accountDeleted: true))])
        let store = try await h.openStore()
        try await h.runLane(until: 1, store: store)
        try await h.produce([v.record(VehicleScript.hvWarn("hv-7"))])
        let s = try await h.runLane(until: 1, store: store)
        #expect(s.tally.alerts == 1)
        let alerts = try await h.read(h.topics.alerts, expecting: 1)
        let alert = try JSONDecoder().decode(CallCentreAlert.self, from: Data(alerts[0].value))
        #expect(alert.priority == "P0" && alert.eventID == "hv-7" && alert.vin == v.vin.description)
        #expect(alert.thermal == "THERMAL_TEMPERATURE_RISE" && alert.pluggedIn == true && alert.maxCellTempDc == 812)
        #expect(alerts[0].key == Array(v.vin.description.utf8))
        await store.close()
    }

    @Test("charging history needs consent, the position is kept only with location consent and only sealed, and switching history off deletes the sessions")
    func chargingConsent() async throws {
        let h = try PipelineHarness()
        var v = VehicleScript("WMW11DJ0X02A00004")
        var w = VehicleScript("WMW11DJ0X02A00005")
        try await h.produce([w.record(VehicleScript.consent(chargingLocation: false))])
        let store = try await h.openStore()
        try await h.runLane(until: 1, store: store)
        try await h.produce([v.record(VehicleScript.session("cs-1")), v.record(VehicleScript.session("cs-1")), w.record(VehicleScript.session("cs-2"))])
        try await h.runLane(until: 3, store: store)
        let sessions = try await store.chargeSessions(v.vin)
        // Stored once per (VIN, session_id), under the id's keyed reference, the id itself sealed.
        let reference = SessionReferences(pseudonymKey: h.secrets.pseudonymKey).reference(vin: v.vin, sessionID: "cs-1")
        #expect(sessions.map(\.sessionID) == [reference], "stored once per (VIN, session_id)")
        let sealed = try #require(sessions.first?.sealedPosition)
        #expect(!sealed.isEmpty)
        let sealer = PositionSealer(keyID: h.secrets.sealingKeyID, keys: h.secrets.sealingKeys)
        #expect(try sealer.open(sealed, keyID: sessions[0].keyID!, vin: v.vin, sessionID: reference) == Position(latE7: 556_761_000, lonE7: 125_683_000))
        #expect(try sealer.openSessionID(sessions[0].sealedSessionID!, keyID: sessions[0].keyID!, vin: v.vin, reference: reference) == "cs-1")
        #expect(try await store.chargeSessions(w.vin).first?.sealedPosition == nil, "no location consent: no position")
        // Switching charging history off deletes the stored sessions; later sessions are dropped.
        try await h.produce([v.record(VehicleScript.consent(chargingHistory: false))])
        try await h.runLane(until: 1, store: store)
        try await h.produce([v.record(VehicleScript.session("cs-3"))])
        let s = try await h.runLane(until: 1, store: store)
        #expect(try await store.chargeSessions(v.vin).isEmpty)
        #expect(s.tally.droppedForConsent["charging_history"] == 1)
        await store.close()
    }

    @Test("a session processed just before charging history is switched off, in the same batch, is not kept")
    func switchOffInSameBatch() async throws {
        let h = try PipelineHarness(partitions: 1)
        var v = VehicleScript("WMW11DJ0X02A0000A")
        // One topic and partition, so the session is processed first and the switch-off right after it.
        try await h.produce([v.record(VehicleScript.session("cs-9")), v.record(VehicleScript.consent(chargingHistory: false))], topic: "telematics.consent")
        var configuration = h.configuration()
        configuration.topics.ingress[.chargeSession] = "telematics.consent"
        let store = try await h.openStore()
        try await h.runLane(until: 2, store: store, configuration: configuration)
        #expect(try await store.chargeSessions(v.vin).isEmpty)
        await store.close()
    }

    @Test("RTTI probes are stored and forwarded under a pseudonym: no VIN, nor its unkeyed hash, in the traffic store or on traffic.probes; rtti consent off drops them")
    func rttiPseudonyms() async throws {
        let h = try PipelineHarness()
        var v = VehicleScript("WMW11DJ0X02A00006")
        var off = VehicleScript("WMW11DJ0X02A00007")
        try await h.produce([off.record(VehicleScript.consent(rtti: false))])
        let store = try await h.openStore()
        try await h.runLane(until: 1, store: store)
        let t = v.time + 1_000
        try await h.produce([
            v.record(VehicleScript.probe(points: 10, recordedAtMs: t, hazardAt: 4)),
            off.record(VehicleScript.probe(points: 5, recordedAtMs: t)),
        ])
        let s = try await h.runLane(until: 2, store: store)
        #expect(s.tally.droppedForConsent["rtti"] == 1)
        #expect(try await store.probePointCount() == 10)
        let hazards = try await h.read(h.topics.probes, expecting: 1)
        #expect(hazards.count == 1)
        let report = try JSONDecoder().decode(HazardReport.self, from: Data(hazards[0].value))
        #expect(report.type == "TYPE_OBSTACLE" && report.pseudonym.count == 32)
        // Written directly, byte for byte what JSONEncoder with sorted keys makes.
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        #expect(hazards[0].value == Array(try encoder.encode(report)))
        var odd = report
        odd.type = "a \"quoted\" \\ type/with slash"
        odd.latE7 = -900_000_000
        #expect(odd.json == Array(try encoder.encode(odd)))
        // Search everything written for the VINs, plain and as unkeyed hashes.
        let vin = v.vin.description
        let needles = [vin, off.vin.description] + [vin, off.vin.description].flatMap(unkeyedHashes)
        let outputs = hazards.map { String(decoding: $0.value, as: UTF8.self) + String(decoding: $0.key ?? [], as: UTF8.self) }
        // The traffic tables, dumped as text by sqlite3 (with the store closed, so the WAL is checkpointed).
        await store.close()
        let files = try sqliteDump(h.directory + "/" + SQLiteStore.fileName, tables: ["probes", "traffic_aggregates", "traffic_speed_buckets", "traffic_vehicles"])
        #expect(files.contains("INSERT INTO probes"), "the traffic tables have rows to search")
        for needle in needles {
            #expect(!outputs.contains { $0.contains(needle) }, "traffic.probes holds \(needle)")
            #expect(!files.contains(needle), "the traffic store holds \(needle)")
        }
    }

    @Test("a rejected record goes to telematics.dlq with its original key and value, the reason and the source position")
    func deadLetters() async throws {
        let h = try PipelineHarness(partitions: 1)
        var v = VehicleScript("WMW11DJ0X02A00008")
        var bad = v.record(VehicleScript.consent())
        bad[2] = 9  // unsupported version
        let wrongKey = v.record(VehicleScript.consent())
        try await h.produce([bad, wrongKey], keys: [Array(v.vin.description.utf8), Array("WMW11DJ0X02A0000X".utf8)], topic: "telematics.consent")
        let store = try await h.openStore()
        let s = try await h.runLane(until: 2, store: store)
        #expect(s.tally.rejected[.unsupportedVersion] == 1 && s.tally.rejected[.badVin] == 1)
        let letters = try await h.read(h.topics.deadLetter, expecting: 2)
        #expect(letters.count == 2)
        #expect(letters[0].value == bad && letters[0].key == Array(v.vin.description.utf8))
        #expect(letters[0].headers["error"] == "unsupported_version")
        #expect(letters[0].headers["source.topic"] == "telematics.consent" && letters[0].headers["source.partition"] == "0" && letters[0].headers["source.offset"] == "0")
        #expect(letters[1].headers["error"] == "bad_vin" && letters[1].headers["source.offset"] == "1")
        #expect(letters.allSatisfy { !($0.headers["error.detail"] ?? "").isEmpty })
        await store.close()
    }

    @Test("maintenance needs open one case per (VIN, need), later calls update it, a reported-gone need closes it, and a workshop stay opens nothing")
    func maintenanceCases() async throws {
        let h = try PipelineHarness()
        var v = VehicleScript("WMW11DJ0X02A00009")
        let oil = ServiceItem(type: .engineOil, status: .dueSoon, dueInDays: 20, dueInKm: 900)
        let oilOK = ServiceItem(type: .engineOil, status: .ok, dueInDays: 700, dueInKm: 30_000)
        let warning = CheckControl(code: 952, severity: .warning)
        let records = [
            v.record(VehicleScript.call(.stateChange, items: [oil], controls: [warning])),  // opens 2
            v.record(VehicleScript.call(.monthly, items: [oil], controls: [warning])),  // updates 2
            v.record(VehicleScript.call(.stateChange, items: [oilOK], controls: [], inWorkshop: true)),  // closes 2
            v.record(VehicleScript.call(.stateChange, items: [ServiceItem(type: .hvBatteryCheck, status: .overdue)], inWorkshop: true)),  // opens nothing
        ]
        try await h.produce(records)
        let store = try await h.openStore()
        let s = try await h.runLane(until: 4, store: store)
        #expect(s.store.casesOpened == 2 && s.store.casesUpdated == 2 && s.store.casesClosed == 2)
        #expect(try await store.maintenanceCases(v.vin, includeClosed: false).isEmpty)
        #expect(try await store.maintenanceCases(v.vin, includeClosed: true).count == 2)
        let state = try #require(try await store.vehicleState(v.vin))
        #expect(state.sequence == 4 && state.mileageKm == 42_000)
        await store.close()
    }
}

/// Hashes of a VIN that anyone could compute without the key.
private func unkeyedHashes(_ vin: String) -> [String] {
    let bytes = Array(vin.utf8)
    let sha = SHA256Digest(bytes)
    return [sha, String(sha.prefix(32))]
}

private func SHA256Digest(_ bytes: [UInt8]) -> String {
    SHA256.hash(data: bytes).map { String(format: "%02x", $0) }.joined()
}

/// `sqlite3 FILE .dump TABLE...`: the rows of those tables as SQL text.
private func sqliteDump(_ file: String, tables: [String]) throws -> String {
    try ProcessOutput.run(["sqlite3", file] + tables.map { ".dump \($0)" }).output
}
