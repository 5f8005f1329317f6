import Foundation
import Testing
import TelematicsKafka
import TelematicsPipeline
import TelematicsWire

/// The call-centre lane and a broker that was away: librdkafka backs off
/// reconnecting to it, 10 s at most by default; the emergency lane caps
/// that at 1 s.
@Suite("Faults: the emergency lane after a broker restart", .serialized)
struct FaultEmergencyBrokerTests {
    @Test("after the broker leading the HV warn topic was down 12 s, the next HV warn call is published within 4 s of its return")
    func brokerBack() async throws {
        let h = try PipelineHarness(partitions: 1, brokers: 3)
        let group = "el-broker-back.emergency"
        // Everything on broker 1 but the HV warn topic, led by broker 2.
        try h.cluster.setGroupCoordinator(group, broker: 1)
        for topic in h.topics.all { try h.cluster.setPartitionLeader(topic, partition: 0, broker: 1) }
        let hvTopic = MessageKind.hvWarnCall.defaultTopic
        try h.cluster.setPartitionLeader(hvTopic, partition: 0, broker: 2)
        let desk = try await DeskFixture.make()
        let statistics = EmergencyStatistics()
        var vehicle = VehicleScript("WMW11DJ0X02E00077")
        var delay: Duration?
        let warm = try await whileRunning([try h.emergencyLane(group: group, handler: desk.handler, statistics: statistics)]) {
            try await h.produce([vehicle.record(VehicleScript.hvWarn("before"))])
            guard await eventually(timeout: .seconds(45), { statistics.snapshot.published >= 1 }) else { return false }
            // Down long enough for the lane's reconnects to back off to their cap.
            try h.cluster.setBrokerDown(2)
            try await Task.sleep(for: .seconds(12))
            try h.cluster.setBrokerUp(2)
            let upAt = ContinuousClock.now
            // A new producer: it connects at once (its backoff is not under test).
            try await h.produce([vehicle.record(VehicleScript.hvWarn("after"))])
            if await eventually(timeout: .seconds(30), { statistics.snapshot.published >= 2 }) { delay = ContinuousClock.now - upAt }
            return true
        }
        await desk.close()
        #expect(warm, "the first call was published before the broker went down")
        let measured = try #require(delay, "the call after the broker's return was published within 30 s")
        reportFigures("emergency-broker-back", ["published_after_return_ms": milliseconds(measured)])
        #expect(measured < .seconds(4), "published \(measured) after the broker came back")
    }
}
