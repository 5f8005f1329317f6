import CallCentre
import FleetSimulator
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Logging
import ServiceLifecycle
import Testing
import TelematicsKafka
import TelematicsPipeline
import TelematicsStores
import TelematicsTestSupport
import TelematicsWire

/// Issue #5: the emergency lane (RULES.md P0) end to end, on the mock
/// cluster, with a real alert desk over a real SQLite alert store.
@Suite("Emergency lane: HV warn calls and handed-over alerts reach the call centre", .serialized)
struct EmergencyLaneTests {
    private static let hvTopic = MessageKind.hvWarnCall.defaultTopic
    private static let teleserviceTopic = MessageKind.teleserviceCall.defaultTopic

    @Test("HV warn calls reach callcentre.alerts as P0 JSON keyed by VIN, are stored by the desk, and are committed: a restarted lane in the same group re-reads and republishes nothing")
    func hvWarnDelivery() async throws {
        let h = try PipelineHarness(partitions: 2)
        let desk = try await DeskFixture.make()
        let watcher = try TopicWatcher(h.cluster, topics: [h.topics.alerts], partitionsPerTopic: 2)
        var vehicles = (1...5).map { VehicleScript("WMW11DJ0X02E0000\($0)") }
        let records = vehicles.indices.map { vehicles[$0].record(VehicleScript.hvWarn("hv-\($0)")) }
        try await h.produce(records)
        let group = "el-delivery.emergency"

        let first = EmergencyStatistics()
        var offsets: (committed: [Int64], end: [Int64]) = ([], [])
        let (published, committed) = try await whileRunning([try h.emergencyLane(group: group, handler: desk.handler, statistics: first)]) {
            let published = await eventually(timeout: .seconds(45)) { first.snapshot.published >= 5 }
            // Committed while running (in the background), up to the end of every partition.
            let committed = try await eventually(timeout: .seconds(20)) {
                offsets = try await h.committedAndEnd(group: group, topic: Self.hvTopic, partitions: 2)
                return zip(offsets.committed, offsets.end).allSatisfy { $1 == 0 || $0 == $1 }
            }
            return (published, committed)
        }
        #expect(published, "5 alerts published; statistics: \(first.snapshot)")
        #expect(committed, "committed \(offsets.committed), partition ends \(offsets.end)")
        #expect(offsets.end.reduce(0, +) == 5)
        // Still committed after the lane left the group.
        #expect(try await h.fullyCommitted(group: group, topic: Self.hvTopic, partitions: 2), "committed after shutdown")
        #expect(first.snapshot.hvWarnCalls == 5 && first.snapshot.repeats == 0 && first.snapshot.rejected == 0)

        #expect(try await h.recordCount(h.topics.alerts, partitions: 2) == 5, "one message per call on callcentre.alerts")
        let alerts = await watcher.records(on: h.topics.alerts, atLeast: 5)
        #expect(alerts.count == 5)
        for message in alerts {
            let object = try #require(try JSONSerialization.jsonObject(with: Data(message.value)) as? [String: Any], "a JSON object")
            #expect(object["event_id"] is String && object["recorded_at_ms"] != nil, "snake_case JSON: \(object.keys.sorted())")
            let alert = try JSONDecoder().decode(CallCentreAlert.self, from: Data(message.value))
            #expect(alert.priority == "P0" && alert.type == "hv_warn_call" && !alert.escalated)
            #expect(message.key == Array(alert.vin.utf8), "key = VIN")
            #expect(alert.thermal == "THERMAL_TEMPERATURE_RISE" && alert.maxCellTempDc == 812 && alert.position?.latE7 == 556_761_000)
        }
        let expected = Set(vehicles.indices.map { "\(vehicles[$0].vin)/hv-\($0)" })
        #expect(Set(alerts.compactMap(\.alert).map(AlertRecord.id(for:))) == expected)
        let stored = try await desk.alerts()
        #expect(Set(stored.map(\.id)) == expected, "the desk stored every alert")
        #expect(stored.allSatisfy { $0.isOpen && $0.updates == 0 && $0.alert.priority == "P0" })

        // A restarted lane in the same group starts after the committed
        // offsets: it reads only what is new, and publishes only that.
        let new = vehicles[0].record(VehicleScript.hvWarn("hv-after-restart"))
        try await h.produce([new])
        let second = EmergencyStatistics()
        let sawNew = try await whileRunning([try h.emergencyLane(group: group, handler: desk.handler, statistics: second)]) {
            let saw = await eventually(timeout: .seconds(45)) { second.snapshot.published >= 1 }
            // Give anything redelivered time to show up.
            try await Task.sleep(for: .milliseconds(500))
            return saw
        }
        #expect(sawNew, "the restarted lane handled the new call; \(second.snapshot)")
        #expect(second.snapshot.hvWarnCalls == 1 && second.snapshot.repeats == 0 && second.snapshot.published == 1,
                "the restarted lane re-read nothing already committed: \(second.snapshot)")
        #expect(try await h.recordCount(h.topics.alerts, partitions: 2) == 6, "5 alerts, then only the new one")
        #expect(await watcher.records(on: h.topics.alerts, atLeast: 6).last?.alert?.eventID == "hv-after-restart")
        #expect(try await desk.alerts().count == 6)
        await watcher.close()
        await desk.close()
    }

    @Test("a commit retried by librdkafka is accepted after the next batch's and sets the HV warn topic's offset back: the lane commits its finished offsets again")
    func recommitWhenOvertaken() async throws {
        let h = try PipelineHarness(partitions: 1)
        let desk = try await DeskFixture.make()
        var vehicle = VehicleScript("WMW11DJ0X02E00001")
        let group = "el-overtaken.emergency"
        let statistics = EmergencyStatistics()
        // librdkafka retries a commit answered "request timed out" after
        // retry.backoff.ms: long enough for the next batch's commit to go first.
        let lane = try h.emergencyLane(group: group, handler: desk.handler, statistics: statistics) {
            $0.consumer.properties["retry.backoff.ms"] = "3000"
        }
        let (overtaken, caughtUp) = try await whileRunning([lane]) {
            h.cluster.pushRequestErrors(apiKey: .offsetCommit, [.requestTimedOut])
            try await h.produce([vehicle.record(VehicleScript.hvWarn("hv-1"))])
            #expect(await eventually(timeout: .seconds(45)) { statistics.snapshot.published >= 1 })
            try await h.produce([vehicle.record(VehicleScript.hvWarn("hv-2"))])
            #expect(await eventually(timeout: .seconds(30)) { statistics.snapshot.published >= 2 })
            // The retry lands a few seconds later, setting the offset back; the lane repairs it.
            let overtaken = await eventually(timeout: .seconds(20)) { statistics.snapshot.recommits >= 1 }
            let caughtUp = await eventually(timeout: .seconds(20)) {
                (try? await h.fullyCommitted(group: group, topic: Self.hvTopic, partitions: 1)) == true
            }
            return (overtaken, caughtUp)
        }
        await desk.close()
        #expect(overtaken, "the lane committed again after the first batch's retried commit; \(statistics.snapshot)")
        #expect(caughtUp, "the group's offset reached the end of the HV warn topic while the lane ran")
    }

    @Test("the same (VIN, event_id) sent 3 times with increasing sequence: one message on callcentre.alerts, one stored alert updated twice")
    func deduplication() async throws {
        let h = try PipelineHarness(partitions: 2)
        let desk = try await DeskFixture.make()
        var v = VehicleScript("WMW11DJ0X02E00010")
        let watcher = try TopicWatcher(h.cluster, topics: [h.topics.alerts], partitionsPerTopic: 2)
        let copies = [800, 820, 845].map { v.record(hvWarn("ev-dup", maxCellTempDc: Int32($0))) }  // sequences 1, 2, 3
        let group = "el-dedup.emergency"
        let statistics = EmergencyStatistics()
        let handled = try await whileRunning([try h.emergencyLane(group: group, handler: desk.handler, statistics: statistics)]) {
            // The first alone, then both repeats together: a repeat in a later batch and one in the same batch.
            try await h.produce([copies[0]])
            guard await eventually(timeout: .seconds(45), { statistics.snapshot.published >= 1 }) else { return false }
            try await h.produce(Array(copies[1...]))
            return try await eventually(timeout: .seconds(20)) {
                guard statistics.snapshot.hvWarnCalls == 3 else { return false }
                return try await h.fullyCommitted(group: group, topic: Self.hvTopic, partitions: 2)
            }
        }
        #expect(handled, "3 calls handled and committed; \(statistics.snapshot)")
        #expect(statistics.snapshot.published == 1 && statistics.snapshot.repeats == 2, "\(statistics.snapshot)")
        #expect(try await h.recordCount(h.topics.alerts, partitions: 2) == 1, "exactly one page for one event")
        let alert = try #require(await watcher.records(on: h.topics.alerts, atLeast: 1).first?.alert)
        #expect(alert.eventID == "ev-dup" && alert.sequence == 1 && alert.vin == v.vin.description)
        let stored = try await desk.alerts()
        #expect(stored.count == 1)
        let record = try #require(stored.first)
        #expect(record.id == "\(v.vin)/ev-dup")
        #expect(record.updates == 2, "updated by both repeats")
        #expect(record.alert.sequence == 3 && record.alert.maxCellTempDc == 845, "the latest state is kept")
        await watcher.close()
        await desk.close()
    }

    @Test("an invalid record on the HV warn topic goes to telematics.dlq with an error header; a teleservice call there is forwarded unchanged to telematics.teleservice")
    func rejectsAndForwards() async throws {
        let h = try PipelineHarness(partitions: 1)
        let desk = try await DeskFixture.make()
        var a = VehicleScript("WMW11DJ0X02E00020")
        var b = VehicleScript("WMW11DJ0X02E00021")
        var bad = a.record(VehicleScript.hvWarn("hv-bad"))
        bad[2] = 9  // unsupported version
        let call = b.record(VehicleScript.call(.monthly))
        let good = a.record(VehicleScript.hvWarn("hv-good"))
        let trace = KafkaHeader(name: "trace-id", value: Array("t-42".utf8))
        try await h.produce([
            KafkaProducerMessage(topic: Self.hvTopic, key: Array(a.vin.description.utf8), value: bad),
            KafkaProducerMessage(topic: Self.hvTopic, key: Array(b.vin.description.utf8), value: call, headers: [trace]),
            KafkaProducerMessage(topic: Self.hvTopic, key: Array(a.vin.description.utf8), value: good),
        ])
        let group = "el-reject.emergency"
        let watcher = try TopicWatcher(h.cluster, topics: [h.topics.alerts, h.topics.deadLetter, Self.teleserviceTopic], partitionsPerTopic: 1)
        let statistics = EmergencyStatistics()
        let handled = try await whileRunning([try h.emergencyLane(group: group, handler: desk.handler, statistics: statistics)]) {
            try await eventually(timeout: .seconds(45)) {
                let s = statistics.snapshot
                guard s.rejected == 1 && s.forwarded == 1 && s.published == 1 else { return false }
                return try await h.committedAndEnd(group: group, topic: Self.hvTopic, partitions: 1).committed == [3]
            }
        }
        #expect(handled, "\(statistics.snapshot)")

        #expect(try await h.recordCount(h.topics.deadLetter, partitions: 1) == 1)
        let letter = try #require(await watcher.records(on: h.topics.deadLetter, atLeast: 1).first)
        let headers = letter.headerMap
        #expect(letter.value == bad && letter.key == Array(a.vin.description.utf8), "original key and value")
        #expect(headers["error"] == "unsupported_version")
        #expect(!(headers["error.detail"] ?? "").isEmpty)
        #expect(headers["source.topic"] == Self.hvTopic && headers["source.partition"] == "0" && headers["source.offset"] == "0")

        #expect(try await h.recordCount(Self.teleserviceTopic, partitions: 1) == 1)
        let f = try #require(await watcher.records(on: Self.teleserviceTopic, atLeast: 1).first)
        #expect(f.value == call && f.key == Array(b.vin.description.utf8), "forwarded byte for byte, same key")
        #expect(f.headers == [trace], "headers kept")

        #expect(try await h.recordCount(h.topics.alerts, partitions: 1) == 1)
        #expect(await watcher.records(on: h.topics.alerts, atLeast: 1).first?.alert?.eventID == "hv-good")
        #expect(try await desk.alerts().map(\.id) == ["\(a.vin)/hv-good"])
        await watcher.close()
        await desk.close()
    }

    @Test("HV warn calls reach callcentre.alerts in well under a second (median), none waiting for the bulk lane stuck on a slow store with an RTTI backlog")
    func isolationFromBulkLoad() async throws {
        let h = try PipelineHarness(partitions: 2)
        let desk = try await DeskFixture.make()
        // An RTTI backlog far bigger than the bulk lane can store before the test ends.
        var fleetConfiguration = FleetSimulator.Configuration(vehicles: 50, seed: 11)
        fleetConfiguration.mix = FleetSimulator.Mix(rtti: 100, teleservice: 0, charging: 0, consent: 0, hvWarn: 0)
        var fleet = try FleetSimulator(configuration: fleetConfiguration)
        let backlog = (0..<600).map { _ in fleet.next().value }
        try await h.produce(backlog)

        // Far above a call's latency under the suite's load (2.1 s and 3.1 s
        // were seen in CI with other lanes' tests running beside this one):
        // a call that waited behind the bulk lane takes at least this long.
        let bulkDelay = Duration.seconds(6)
        let store = DelayingStore(try await h.openStore(), delay: bulkDelay)
        var bulkConfiguration = h.configuration(group: "el-iso", batchSize: 50)
        bulkConfiguration.batchesInFlight = 1
        let bulkStatistics = PipelineStatistics()
        let emergencyStatistics = EmergencyStatistics()
        let lane = try h.emergencyLane(group: "el-iso.emergency", handler: desk.handler, statistics: emergencyStatistics)
        let bulk = BulkLane(configuration: bulkConfiguration, store: store, dictionaries: .none, secrets: h.secrets,
                            statistics: bulkStatistics, emergency: lane, logger: Logger(label: "test.bulk"))
        let watcher = try TopicWatcher(h.cluster, topics: [h.topics.alerts], partitionsPerTopic: 2)
        let producer = try KafkaProducer(configuration: KafkaProducerConfiguration(bootstrap: h.cluster.bootstrap))

        var latencies: [Duration] = []
        var bulkCommittedAtEnd = 0
        var ready = (watcher: false, stuck: false, warm: false)
        try await whileRunning([lane, bulk]) {
            ready.watcher = await watcher.waitUntilAssigned()
            // The bulk lane is inside its (slow) store.
            ready.stuck = await eventually(timeout: .seconds(45)) { store.appliesStarted >= 1 }
            // One call first: the emergency lane has joined its group and serves.
            var w = VehicleScript("WMW11DJ0X02E00030")
            _ = try await producer.send([hvMessage(w.record(VehicleScript.hvWarn("warm-up")))])
            ready.warm = await eventually(timeout: .seconds(45)) { watcher.alerts.contains { $0.eventID == "warm-up" } }
            guard ready.watcher, ready.stuck, ready.warm else { return }
            for i in 0..<5 {
                var v = VehicleScript("WMW11DJ0X02E0004\(i)")
                let message = hvMessage(v.record(VehicleScript.hvWarn("iso-\(i)")))
                let sent = ContinuousClock.now
                _ = try await producer.send([message])
                var arrived: ContinuousClock.Instant?
                await eventually(timeout: .seconds(10)) {
                    arrived = watcher.records(on: h.topics.alerts).first { $0.alert?.eventID == "iso-\(i)" }?.at
                    return arrived != nil
                }
                latencies.append(arrived.map { $0 - sent } ?? .seconds(999))
            }
            bulkCommittedAtEnd = bulkStatistics.snapshot.committedRecords
        }
        try await producer.close()
        await watcher.close()
        #expect(ready.watcher && ready.stuck && ready.warm, "setup: \(ready); bulk \(bulkStatistics.snapshot.committedRecords) committed")
        #expect(latencies.count == 5)
        // A call that waited behind the bulk lane would take at least the
        // bulk store's delay; the median shows the usual case. (A bound of
        // 1 s per call failed once in CI at 1.075 s for the first call,
        // under the full suite's load.)
        let median = latencies.sorted()[latencies.count / 2]
        #expect(median < .milliseconds(500) && latencies.allSatisfy { $0 < bulkDelay },
                "produce-to-callcentre.alerts latencies \(latencies) with the bulk store taking \(bulkDelay) per batch")
        #expect(bulkCommittedAtEnd < backlog.count, "the bulk lane had not finished its backlog (\(bulkCommittedAtEnd) of \(backlog.count) committed)")
        #expect(emergencyStatistics.snapshot.published == 6 && emergencyStatistics.snapshot.handedOver == 0)
        #expect(try await desk.alerts().count == 6)
        await desk.close()
        await store.close()
    }

    @Test("a breakdown or accident call on the bulk topic becomes one P1 alert through the emergency lane, not published again when the batch is redelivered")
    func handover() async throws {
        let h = try PipelineHarness(partitions: 1)
        let desk = try await DeskFixture.make()
        let position = Position(latE7: 481_370_000, lonE7: 115_750_000)
        var a = VehicleScript("WMW11DJ0X02E00050")
        var b = VehicleScript("WMW11DJ0X02E00051")
        var c = VehicleScript("WMW11DJ0X02E00052")
        try await h.produce([
            a.record(VehicleScript.call(.breakdown, position: position)),
            b.record(VehicleScript.call(.accident, position: position)),
            c.record(VehicleScript.call(.monthly)),
        ])

        // First run: the bulk lane hands both urgent calls to the emergency lane.
        let watcher = try TopicWatcher(h.cluster, topics: [h.topics.alerts], partitionsPerTopic: 1)
        let store = try await h.openStore()
        let first = EmergencyStatistics()
        let bulkStatistics = PipelineStatistics()
        var committed: [Int64] = []
        let done = try await whileRunning(try lanes(h, group: "el-handover", store: store, desk: desk, emergency: first, bulk: bulkStatistics)) {
            try await eventually(timeout: .seconds(45)) {
                guard bulkStatistics.snapshot.committedRecords >= 3 else { return false }
                committed = try await h.committedAndEnd(group: "el-handover", topic: Self.teleserviceTopic, partitions: 1).committed
                return committed == [3]
            }
        }
        #expect(done, "bulk committed \(bulkStatistics.snapshot.committedRecords), offsets \(committed)")
        #expect(first.snapshot.handedOver == 2 && first.snapshot.published == 2 && first.snapshot.hvWarnCalls == 0, "\(first.snapshot)")
        #expect(bulkStatistics.snapshot.tally.alerts == 2)
        let stored = try await desk.alerts()
        #expect(Set(stored.map(\.id)) == ["\(a.vin)/call-1", "\(b.vin)/call-1"], "stored via the desk")
        #expect(stored.allSatisfy { $0.alert.priority == "P1" && $0.alert.position == AlertPosition(position) })
        #expect(try await h.recordCount(h.topics.alerts, partitions: 1) == 2)
        let alerts = await watcher.records(on: h.topics.alerts, atLeast: 2)
        let decoded = try alerts.map { try JSONDecoder().decode(CallCentreAlert.self, from: Data($0.value)) }
        #expect(Set(decoded.map { "\($0.vin) \($0.type) \($0.priority)" }) == ["\(a.vin) breakdown P1", "\(b.vin) accident P1"])
        #expect(alerts.allSatisfy { message in decoded.contains { Array($0.vin.utf8) == message.key } }, "key = VIN")
        #expect(decoded.allSatisfy { $0.position == AlertPosition(position) && $0.servicePartnerID == "DK-1070" })

        // The same records again (a fresh bulk group, as after a lost commit):
        // handed over again, but the desk says they are repeats, so no second page.
        let second = EmergencyStatistics()
        let again = PipelineStatistics()
        let redone = try await whileRunning(try lanes(h, group: "el-handover-again", store: store, desk: desk, emergency: second, bulk: again)) {
            await eventually(timeout: .seconds(45)) { again.snapshot.committedRecords >= 3 && second.snapshot.repeats >= 2 }
        }
        #expect(redone, "bulk \(again.snapshot.committedRecords) committed; \(second.snapshot)")
        #expect(second.snapshot.handedOver == 2 && second.snapshot.repeats == 2 && second.snapshot.published == 0, "\(second.snapshot)")
        #expect(try await h.recordCount(h.topics.alerts, partitions: 1) == 2, "no second publication")
        #expect(watcher.records(on: h.topics.alerts).count == 2)
        #expect(try await desk.alerts().allSatisfy { $0.updates == 0 })
        #expect(try await desk.alerts().count == 2)
        await watcher.close()
        await store.close()
        await desk.close()
    }

    @Test("the bulk lane commits a batch only once the alert it handed over is durable")
    func bulkCommitWaitsForHandedOverAlert() async throws {
        let h = try PipelineHarness(partitions: 1)
        let desk = try await DeskFixture.make()
        var a = VehicleScript("WMW11DJ0X02E00060")
        var b = VehicleScript("WMW11DJ0X02E00061")
        try await h.produce([
            a.record(VehicleScript.call(.accident, position: Position(latE7: 481_370_000, lonE7: 115_750_000))),
            b.record(VehicleScript.call(.monthly)),
        ])
        let gate = Gate()
        let inner = desk.handler
        let statistics = EmergencyStatistics()
        let lane = try h.emergencyLane(group: "el-gate.emergency", handler: { alerts in
            await gate.wait()
            return try await inner(alerts)
        }, statistics: statistics)
        let store = try await h.openStore()
        let bulkStatistics = PipelineStatistics()
        let bulk = BulkLane(configuration: h.configuration(group: "el-gate"), store: store, dictionaries: .none, secrets: h.secrets,
                            statistics: bulkStatistics, emergency: lane, logger: Logger(label: "test.bulk"))

        var held = (handedOver: false, stored: false, committedWhileHeld: [[Int64]](), recordsWhileHeld: [Int]())
        var released = false
        var finalOffsets: [Int64] = []
        try await whileRunning([lane, bulk]) {
            held.handedOver = await eventually(timeout: .seconds(45)) { gate.arrivals >= 1 }
            guard held.handedOver else { return }
            // The batch's store transaction goes through; its commit must not.
            held.stored = try await eventually(timeout: .seconds(10)) { try await store.teleserviceCalls(b.vin).count == 1 }
            for _ in 0..<5 {
                try await Task.sleep(for: .milliseconds(300))
                held.committedWhileHeld.append(try await h.committedAndEnd(group: "el-gate", topic: Self.teleserviceTopic, partitions: 1).committed)
                held.recordsWhileHeld.append(bulkStatistics.snapshot.committedRecords)
            }
            gate.release()
            released = try await eventually(timeout: .seconds(20)) {
                finalOffsets = try await h.committedAndEnd(group: "el-gate", topic: Self.teleserviceTopic, partitions: 1).committed
                return finalOffsets == [2]
            }
        }
        #expect(held.handedOver, "the accident call was handed over")
        #expect(held.stored, "the bulk store transaction ran meanwhile")
        #expect(held.committedWhileHeld.allSatisfy { $0.allSatisfy { $0 < 0 } }, "nothing committed while the alert was held: \(held.committedWhileHeld)")
        #expect(held.recordsWhileHeld.allSatisfy { $0 == 0 }, "\(held.recordsWhileHeld)")
        #expect(released, "committed once released: \(finalOffsets)")
        #expect(statistics.snapshot.published == 1)
        #expect(try await h.recordCount(h.topics.alerts, partitions: 1) == 1)
        #expect(try await desk.alerts().map(\.id) == ["\(a.vin)/call-1"])
        await store.close()
        await desk.close()
    }

    @Test("telematics run: an HV warn call shows on the console, an agent acknowledges it with a token, /metrics counts it, SIGTERM exits 0",
          .enabled(if: TelematicsBinary.url != nil, "the telematics binary is not built"))
    func runCommandConsole() async throws {
        let h = try PipelineHarness(partitions: 2)
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tm-run-el-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let errPath = dir + "/stderr.log"
        _ = FileManager.default.createFile(atPath: errPath, contents: nil)
        let process = try TelematicsBinary.start(
            ["run", "--brokers", h.cluster.bootstrap.description, "--group", "el-run", "--sqlite", dir + "/data", "--secrets", dir + "/secrets",
             "--console", "127.0.0.1:0", "--agent", "carla:secret", "--batch-size", "200"],
            stderr: try FileHandle(forWritingTo: URL(fileURLWithPath: errPath)))
        defer { if process.isRunning { process.terminate(); process.waitUntilExit() } }
        func stderr() -> String { (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? "" }

        // The console announces the port the kernel picked.
        var port: Int?
        await eventually(timeout: .seconds(30)) {
            port = consolePort(in: stderr())
            return port != nil || !process.isRunning
        }
        let base = "http://127.0.0.1:\(try #require(port, "no console announcement; stderr: \(stderr().suffix(2000))"))"

        var v = VehicleScript("WMW11DJ0X02E00070")
        try await h.produce([v.record(VehicleScript.hvWarn("run-1"))])
        let id = "\(v.vin)/run-1"

        var listed: [[String: Any]] = []
        let shown = await eventually(timeout: .seconds(45)) {
            guard let (status, body) = try? await http("GET", base + "/api/alerts"), status == 200 else { return false }
            listed = ((try? JSONSerialization.jsonObject(with: body)) as? [[String: Any]]) ?? []
            return listed.contains { $0["id"] as? String == id }
        }
        #expect(shown, "GET /api/alerts shows the alert: \(listed); stderr: \(stderr().suffix(2000))")
        let ack = base + "/api/alerts/\(v.vin)/run-1/ack"
        #expect(try await http("POST", ack).status == 401, "no token")
        #expect(try await http("POST", ack, token: "not-a-token").status == 401, "unknown token")
        let (status, body) = try await http("POST", ack, token: "secret")
        #expect(status == 200)
        let record = try JSONSerialization.jsonObject(with: body) as? [String: Any]
        #expect(record?["acknowledged_by"] as? String == "carla" && record?["id"] as? String == id, "\(String(decoding: body, as: UTF8.self))")
        #expect(record?["acknowledged_at_ms"] is NSNumber)

        var metrics = ""
        let counted = await eventually(timeout: .seconds(15)) {
            guard let (_, body) = try? await http("GET", base + "/metrics") else { return false }
            metrics = String(decoding: body, as: UTF8.self)
            return metrics.contains("telematics_records_total{kind=\"hv_warn_call\"} 1")
                && metrics.contains("telematics_alert_latency_seconds")
        }
        #expect(counted, "/metrics: \(metrics.split(separator: "\n").filter { $0.hasPrefix("telematics_") }.prefix(40).joined(separator: "\n"))")

        kill(process.processIdentifier, SIGTERM)
        let exited = await eventually(timeout: .seconds(30)) { !process.isRunning }
        #expect(exited, "stopped within 30 s of SIGTERM")
        if exited {
            process.waitUntilExit()
            #expect(process.terminationStatus == 0, "exit status; stderr: \(stderr().suffix(2000))")
        }
    }
}

// MARK: - Helpers

/// An HV warn call with a given cell temperature (to tell repeats apart).
private func hvWarn(_ eventID: String, maxCellTempDc: Int32) -> MessageBody {
    guard case .hvWarnCall(var m) = VehicleScript.hvWarn(eventID) else { fatalError() }
    m.maxCellTempDc = maxCellTempDc
    return .hvWarnCall(m)
}

/// A record for the HV warn topic, keyed by its VIN.
func hvMessage(_ value: [UInt8]) -> KafkaProducerMessage {
    KafkaProducerMessage(topic: MessageKind.hvWarnCall.defaultTopic, key: Array(value[24..<41]), value: value)
}

/// An emergency lane and a bulk lane that hands it alerts, as `telematics run` wires them.
private func lanes(_ h: PipelineHarness, group: String, store: any TelematicsStore, desk: DeskFixture,
                   emergency: EmergencyStatistics, bulk: PipelineStatistics) throws -> [any Service] {
    let lane = try h.emergencyLane(group: group + ".emergency", handler: desk.handler, statistics: emergency)
    return [lane, BulkLane(configuration: h.configuration(group: group), store: store, dictionaries: .none, secrets: h.secrets,
                           statistics: bulk, emergency: lane, logger: Logger(label: "test.bulk"))]
}

/// Runs `services` while `body` runs, then shuts them down gracefully (also when `body` throws).
func whileRunning<T>(_ services: [any Service], _ body: () async throws -> T) async throws -> T {
    let running = RunningServices(services)
    let result: T
    do {
        result = try await body()
    } catch {
        try? await running.stop()
        throw error
    }
    try await running.stop()
    return result
}

extension TopicWatcher {
    /// The alerts seen so far.
    var alerts: [CallCentreAlert] { records.compactMap(\.alert) }
}

/// The port of "call-centre console: http://HOST:PORT/" in the log.
private func consolePort(in log: String) -> Int? {
    guard let range = log.range(of: "call-centre console: http://") else { return nil }
    let rest = log[range.upperBound...]
    guard let colon = rest.firstIndex(of: ":") else { return nil }
    return Int(rest[rest.index(after: colon)...].prefix { $0.isNumber })
}

/// One HTTP request (short timeouts); status and body.
private func http(_ method: String, _ url: String, token: String? = nil) async throws -> (status: Int, body: Data) {
    var request = URLRequest(url: URL(string: url)!, timeoutInterval: 5)
    request.httpMethod = method
    if let token { request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization") }
    let configuration = URLSessionConfiguration.ephemeral
    configuration.timeoutIntervalForRequest = 5
    let session = URLSession(configuration: configuration)
    defer { session.finishTasksAndInvalidate() }
    let (data, response) = try await session.data(for: request)
    return ((response as? HTTPURLResponse)?.statusCode ?? 0, data)
}
