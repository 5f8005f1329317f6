import Foundation
import TelematicsPipeline
import TelematicsPrivacy
import TelematicsStores
import TelematicsTestSupport
import TelematicsWire
import Testing

@Suite("Retention (RULES.md periods, injectable clock)")
struct RetentionTests {
    @Test("periods parse with units, reject unknown names and bad durations, and keep RULES.md's defaults")
    func policy() throws {
        let defaults = RetentionPolicy()
        #expect(defaults[.rawProbes] == 24 * hourMs && defaults[.trafficAggregates] == 30 * dayMs)
        #expect(defaults[.personalData] == 28 * dayMs && defaults[.hvAlerts] == 183 * dayMs)
        let set = try RetentionPolicy(settings: ["raw-probes=48h", "personal-data=2w", "hv-alerts=90m"])
        #expect(set[.rawProbes] == 48 * hourMs && set[.personalData] == 14 * dayMs && set[.hvAlerts] == 90 * 60_000)
        #expect(set.description.contains("raw-probes=2d") && set.description.contains("traffic-aggregates=30d"))
        #expect(throws: RetentionSettingError.self) { try RetentionPolicy(settings: ["raw-points=24h"]) }
        #expect(throws: RetentionSettingError.self) { try RetentionPolicy(settings: ["raw-probes=24"]) }
        #expect(throws: RetentionSettingError.self) { try RetentionPolicy(settings: ["raw-probes=0h"]) }
        #expect(throws: RetentionSettingError.self) { try RetentionPolicy(settings: ["raw-probes"]) }
    }

    @Test("each rule deletes exactly what has expired, when it has expired; dry runs count and delete nothing", arguments: StoreKind.allCases)
    func rules(kind: StoreKind) async throws {
        try await withStores(kind) { store, alerts in
            let secrets = testSecrets()
            let withCase = testVIN(1), plain = testVIN(2)
            _ = try await store.apply(StoreBatch(
                teleserviceCalls: [teleserviceCall(withCase, 1, at: t0, items: [oil(.dueSoon)]), teleserviceCall(plain, 1, at: t0)],
                chargeSessions: [try chargeSession(plain, "s-1", endedAt: t0, secrets: secrets)],
                probePoints: probe(plain, sequence: 1, at: t0, secrets: secrets) + probe(withCase, sequence: 1, at: t0, secrets: secrets)))
            _ = try await alerts.upsert([hvAlert(plain, event: "e-1", at: t0)], receivedAtMs: t0)
            let clock = TestClock(t0)
            let job = RetentionJob(store: store, alerts: alerts, policy: RetentionPolicy(), now: clock.closure)
            func pass(at now: Int64, dry: Bool = false) async throws -> [String: Int] {
                clock.set(now)
                let report = try await job.run(dryRun: dry)
                return Dictionary(uniqueKeysWithValues: report.lines.map { ("\($0.store)/\($0.rule)", $0.rows) })
            }

            // 23 h: nothing has expired.
            #expect(try await pass(at: t0 + 23 * hourMs).values.allSatisfy { $0 == 0 })
            // 25 h: the raw points and their pseudonym memberships (one
            // aggregate's set of two vehicles, cleared), nothing else.
            #expect(try await store.stats().trafficVehicles == 2)
            let dry = try await pass(at: t0 + 25 * hourMs, dry: true)
            #expect(dry["pipeline/raw-probes"] == 2 && dry["pipeline/traffic-memberships"] == 1)
            #expect(try await store.probePointCount() == 10, "a dry run deletes nothing")
            let day1 = try await pass(at: t0 + 25 * hourMs)
            #expect(day1 == dry, "the pass deletes what the dry run counted")
            #expect(try await store.probePointCount() == 0)
            var stats = try await store.stats()
            #expect(stats.trafficVehicles == 0 && stats.trafficAggregates == 1 && stats.teleserviceCalls == 2)

            // 29 days: personal data of 28 days goes: the session and the call of
            // the vehicle without a case. The call behind an open case stays.
            let day29 = try await pass(at: t0 + 29 * dayMs)
            #expect(day29["pipeline/charge-sessions"] == 1 && day29["pipeline/teleservice-calls"] == 1)
            #expect(day29["pipeline/traffic-aggregates"] == 0 && day29["pipeline/closed-cases"] == 0)
            #expect(try await store.teleserviceCalls(plain).isEmpty)
            #expect(try await store.chargeSessions(plain).isEmpty)
            #expect(try await store.teleserviceCalls(withCase).count == 1)

            // The need goes away on day 29: the case closes; its old call may go now.
            _ = try await store.apply(StoreBatch(teleserviceCalls: [teleserviceCall(withCase, 2, at: t0 + 29 * dayMs, items: [oil(.ok)])]))
            let day31 = try await pass(at: t0 + 31 * dayMs)
            #expect(day31["pipeline/teleservice-calls"] == 1 && day31["pipeline/traffic-aggregates"] == 1)
            #expect(day31["pipeline/closed-cases"] == 0, "closed 2 days ago")
            #expect(try await store.teleserviceCalls(withCase).map(\.sequence) == [2])
            let day58 = try await pass(at: t0 + 58 * dayMs)
            #expect(day58["pipeline/closed-cases"] == 1 && day58["pipeline/teleservice-calls"] == 1)

            // Alerts: six months after the event.
            #expect(try await pass(at: t0 + 182 * dayMs)["alerts/hv-alerts"] == 0)
            #expect(try await pass(at: t0 + 184 * dayMs)["alerts/hv-alerts"] == 1)
            #expect(try await alerts.alerts(vin: plain.description).isEmpty)

            // Technical state stays for the vehicle's life; the counters say what went.
            stats = try await store.stats()
            #expect(stats.vehicleStates == 2 && stats.teleserviceCalls == 0 && stats.maintenanceCases == 0 && stats.chargeSessions == 0)
            let counters = try await store.counters()
            #expect(counters["retention.raw-probes"] == 2 && counters["retention.charge-sessions"] == 1)
            #expect(counters["retention.teleservice-calls"] == 3 && counters["retention.closed-cases"] == 1)
            #expect(counters["retention.traffic-aggregates"] == 1)
        }
    }

    @Test("a pass deletes in bounded batches, each its own transaction, until nothing expired is left", arguments: StoreKind.allCases)
    func batches(kind: StoreKind) async throws {
        try await withStores(kind) { store, _ in
            let secrets = testSecrets()
            let points = (1...23).flatMap { probe(testVIN(3), sequence: UInt64($0), at: t0, count: 2, secrets: secrets) }
            _ = try await store.apply(StoreBatch(probePoints: points))
            #expect(try await store.sweep(.rawProbes, before: t0 + 1, limit: 5) == 5, "one sweep deletes at most its limit")
            var job = RetentionJob(store: store, alerts: nil, policy: try RetentionPolicy(settings: ["raw-probes=1h"]), now: { t0 + 2 * hourMs })
            job.batchSize = 4
            let report = try await job.run(dryRun: false)
            #expect(report.lines.first { $0.rule == "raw-probes" }?.rows == 18)
            #expect(try await store.probePointCount() == 0)
            #expect(try await store.counters()["retention.raw-probes"] == 23)
        }
    }
}
