import Foundation
import Logging
import ServiceLifecycle
import Testing
import TelematicsKafka
import TelematicsPipeline
import TelematicsStores
import TelematicsWire

/// Issue #9, the call-centre lane while the bulk lane is down: its store
/// refuses every write (the lane retries and holds its batches), and HV
/// warn calls keep reaching the call centre.
@Suite("Faults: the call centre while the bulk lane is down", .serialized)
struct FaultCallCentreTests {
    private static let partitions = 2

    /// An emergency lane and a bulk lane handing it alerts, as `telematics run` wires them.
    private static func lanes(_ h: PipelineHarness, group: String, store: any TelematicsStore, desk: DeskFixture,
                              bulk: PipelineStatistics, emergency: EmergencyStatistics) throws -> [any Service] {
        let lane = try h.emergencyLane(group: group + ".emergency", handler: desk.handler, statistics: emergency)
        return [lane, BulkLane(configuration: h.configuration(group: group, batchSize: 200), store: store, dictionaries: .none,
                               secrets: h.secrets, statistics: bulk, emergency: lane, logger: Logger(label: "test.bulk.\(group)"))]
    }

    @Test("HV warn calls reach callcentre.alerts with low latency while the bulk store is down; once it is back the bulk lane finishes with what a clean run stores, every offset committed")
    func alertsWhileBulkDown() async throws {
        let h = try PipelineHarness(partitions: Self.partitions)
        let records = try fleetRecords(FaultSettings.integer("TELEMATICS_FAULT_RECORDS", short: 3_000, long: 20_000), seed: 61, vehicles: 100)
        let bulkRecords = records.filter { MessageKind(rawValue: $0[3]) != .hvWarnCall }.count
        try await h.produce(records)

        // The clean run: both lanes, a healthy store.
        let cleanDesk = try await DeskFixture.make()
        let cleanStore = try await h.openStore()
        let cleanBulk = PipelineStatistics()
        let cleanFinished = try await whileRunning(try Self.lanes(h, group: "clean", store: cleanStore, desk: cleanDesk,
                                                                  bulk: cleanBulk, emergency: EmergencyStatistics())) {
            await eventually(timeout: .seconds(120)) { cleanBulk.snapshot.committedRecords >= bulkRecords }
        }
        #expect(cleanFinished, "the clean run committed \(cleanBulk.snapshot.committedRecords) of \(bulkRecords)")
        let expected = try await cleanStore.stats()
        let expectedAlerts = try await cleanDesk.alerts().count
        await cleanStore.close()
        await cleanDesk.close()

        // The bulk store is down from the start.
        let group = "bulk-down"
        let desk = try await DeskFixture.make()
        let store = DelayingStore(try await SQLiteStore(directory: h.directory + "/down"), delay: .zero)
        store.down = true
        let bulk = PipelineStatistics()
        let emergency = EmergencyStatistics()
        let watcher = try TopicWatcher(h.cluster, topics: [h.topics.alerts], partitionsPerTopic: Self.partitions)
        let producer = try KafkaProducer(configuration: KafkaProducerConfiguration(bootstrap: h.cluster.bootstrap))
        let calls = FaultSettings.integer("TELEMATICS_FAULT_CALLS", short: 40, long: 400)
        var latencies: [Duration] = []
        var ready = (watcher: false, bulkStuck: false, warm: false)
        var committedWhileDown = -1
        var retriesWhileDown = 0
        var recovery = Duration.zero
        let finished = try await whileRunning(try Self.lanes(h, group: group, store: store, desk: desk, bulk: bulk, emergency: emergency)) {
            ready.watcher = await watcher.waitUntilAssigned()
            ready.bulkStuck = await eventually(timeout: .seconds(60)) { bulk.snapshot.storeRetries >= 2 }
            // One call first: the emergency lane has joined its group and serves.
            var first = VehicleScript("WMW11DJ0X02E00030")
            _ = try await producer.send([hvMessage(first.record(VehicleScript.hvWarn("warm-up")))])
            ready.warm = await eventually(timeout: .seconds(45)) { watcher.alerts.contains { $0.eventID == "warm-up" } }
            guard ready.watcher, ready.bulkStuck, ready.warm else { return false }
            // One call every 50 ms, each from its own vehicle.
            var sentAt: [String: ContinuousClock.Instant] = [:]
            for i in 0..<calls {
                var vehicle = VehicleScript(String(format: "WMW11DJ0X02F%05d", i))
                let event = "down-\(i)"
                sentAt[event] = ContinuousClock.now
                _ = try await producer.send([hvMessage(vehicle.record(VehicleScript.hvWarn(event)))])
                try await Task.sleep(for: .milliseconds(50))
            }
            // The watcher also sees the clean run's alerts: only these calls count, each at its first arrival.
            var arrived: [String: ContinuousClock.Instant] = [:]
            await eventually(timeout: .seconds(30)) {
                for record in watcher.records(on: h.topics.alerts) {
                    if let event = record.alert?.eventID, sentAt[event] != nil, arrived[event] == nil { arrived[event] = record.at }
                }
                return arrived.count >= calls
            }
            latencies = arrived.map { $0.value - sentAt[$0.key]! }
            committedWhileDown = bulk.snapshot.committedRecords
            retriesWhileDown = bulk.snapshot.storeRetries
            // The store comes back: the bulk lane finishes its backlog.
            store.down = false
            let upAt = ContinuousClock.now
            let done = await eventually(timeout: .seconds(120)) { bulk.snapshot.committedRecords >= bulkRecords }
            recovery = ContinuousClock.now - upAt
            return done
        }
        try await producer.close()
        await watcher.close()

        #expect(ready.watcher && ready.bulkStuck && finished, "setup \(ready), finished \(finished): \(bulk.snapshot.committedRecords) of \(bulkRecords)")
        #expect(committedWhileDown == 0, "the bulk lane committed nothing while its store was down (\(committedWhileDown))")
        #expect(latencies.count == calls, "alerts seen on callcentre.alerts: \(latencies.count) of \(calls)")
        let sorted = latencies.sorted()
        let p50 = sorted.isEmpty ? .zero : sorted[sorted.count / 2]
        let p90 = sorted.isEmpty ? .zero : sorted[sorted.count * 9 / 10]
        let p99 = sorted.isEmpty ? .zero : sorted[min(sorted.count - 1, sorted.count * 99 / 100)]
        // Alerts that waited for the bulk store would arrive only after it
        // came back, which happens only once every call's alert has arrived
        // (or the 30 s wait ran out, and the count above fails). Within that,
        // the bounds leave room for the full suite's load on 2 vCPUs: the
        // median stayed at 25-58 ms in every run, but the slowest alert of 40
        // has taken 0.7-1.8 s, and once 12 s (p90 2.3 s once), while dozens of tests ran at
        // once in this process. So the tail is reported, not bounded; the
        // alert benchmark (Benchmarks/alert-latency.sh) measures p99 alone.
        #expect(p50 < .milliseconds(250), "produce-to-callcentre.alerts p50 \(p50) with the bulk store down")
        #expect(p90 < .seconds(5), "produce-to-callcentre.alerts p90 \(p90) with the bulk store down")
        #expect(try await h.uncommittedIngress(group: group, partitions: Self.partitions, only: h.topics.bulkIngress).isEmpty)
        #expect(try await h.uncommittedIngress(group: group + ".emergency", partitions: Self.partitions,
                                               only: [MessageKind.hvWarnCall.defaultTopic]).isEmpty)
        let got = try await store.stats()
        #expect(got == expected, "after the bulk store came back: \(got); a clean run: \(expected)")
        #expect(try await desk.alerts().count == expectedAlerts + calls + 1, "the backlog's alerts and every call's (and the warm-up's), once each")
        await store.close()
        await desk.close()
        reportFigures("callcentre-bulk-down", [
            "calls": calls, "p50_ms": Double(milliseconds(p50 * 1000)) / 1000, "p90_ms": Double(milliseconds(p90 * 1000)) / 1000,
            "p99_ms": Double(milliseconds(p99 * 1000)) / 1000,
            "max_ms": Double(milliseconds((sorted.last ?? .zero) * 1000)) / 1000, "bulk_retries_while_down": retriesWhileDown,
            "bulk_records": bulkRecords, "bulk_finished_after_store_back_ms": milliseconds(recovery),
        ])
    }
}
