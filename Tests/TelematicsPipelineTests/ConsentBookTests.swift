@testable import TelematicsPipeline
import TelematicsKafka
import TelematicsStores
import TelematicsWire
import Testing

/// The consent book's bound: the pipeline forgets vehicles not seen lately,
/// but only what is durable, so the store gives back the same state.
@Suite("Consent book: bounded, forgetting only what is durable")
struct ConsentBookTests {
    /// VIN number `i` (17 characters, no I, O or Q).
    static func vin(_ i: Int) -> VIN {
        let digits = String(i)
        return VIN("WMW11DJ0X" + String(repeating: "0", count: 8 - digits.count) + digits)!
    }

    static func change(_ vin: VIN, rtti: Bool, at t: Int64) -> ConsentChange {
        var state = ConsentState.defaults
        state.rtti = rtti
        return ConsentChange(vin: vin, state: state, recordedAtMs: t, sequence: UInt64(t))
    }

    @Test("with every batch durable, a book of 100 holds at most its capacity and a batch's vehicles, however many vehicles pass")
    func bounded() {
        var book = ConsentBook(capacity: 100)
        var most = 0
        for batch in 0..<200 {
            book.beginBatch(batch, durableBatches: batch)
            for i in 0..<20 { book.markDefault(Self.vin(batch * 20 + i)) }
            most = max(most, book.count)
        }
        #expect(most <= 100 + 20, "held \(most) vehicles at most")
        #expect(!book.knows(Self.vin(0)), "the first vehicle is forgotten")
        #expect(book.knows(Self.vin(199 * 20)), "the last batch's vehicles are known")
    }

    @Test("a vehicle seen in every batch is never forgotten, and keeps its state")
    func hotVehicleKept() {
        var book = ConsentBook(capacity: 10)
        let hot = Self.vin(999_999)
        book.apply(Self.change(hot, rtti: false, at: 1), inBatch: 0)
        for batch in 1..<100 {
            book.beginBatch(batch, durableBatches: batch)
            #expect(book.state(of: hot).rtti == false)
            for i in 0..<7 { book.markDefault(Self.vin(batch * 7 + i)) }
        }
        #expect(book.knows(hot))
        #expect(book.count <= 10 + 7 + 1)
    }

    @Test("nothing is forgotten while the batches that last used it are not durable; once they are, the book shrinks")
    func waitsForDurability() {
        var book = ConsentBook(capacity: 10)
        let changed = Self.vin(999_998)
        book.beginBatch(0, durableBatches: 0)
        book.apply(Self.change(changed, rtti: false, at: 1), inBatch: 0)
        // The store stays behind: no batch becomes durable.
        for batch in 1..<50 {
            book.beginBatch(batch, durableBatches: 0)
            for i in 0..<5 { book.markDefault(Self.vin(batch * 5 + i)) }
            #expect(book.knows(changed), "forgotten at batch \(batch) with nothing durable")
        }
        #expect(book.count == 1 + 49 * 5, "everything kept while nothing is durable")
        #expect(book.state(of: changed).rtti == false)
        // The store catches up: every batch durable, and the vehicles of
        // before are forgotten within two turns of the generations.
        for batch in 50..<60 {
            book.beginBatch(batch, durableBatches: batch)
            for i in 0..<5 { book.markDefault(Self.vin(batch * 5 + i)) }
        }
        #expect(book.count <= 10 + 5, "\(book.count) vehicles once the store caught up")
        #expect(!book.knows(Self.vin(5)))
    }

    @Test("a vehicle is forgotten only after the batch of its last change is durable")
    func forgottenOnlyWhenDurable() {
        var book = ConsentBook(capacity: 8)
        let vins = (0..<400).map(Self.vin)
        // Vehicle v changes its consent in batch v / 4; the store is two batches behind.
        var changedIn: [VIN: Int] = [:]
        for batch in 0..<100 {
            let durable = max(0, batch - 2)
            book.beginBatch(batch, durableBatches: durable)
            for (vin, b) in changedIn where !book.knows(vin) {
                #expect(b < durable, "\(vin) forgotten at batch \(batch), its change of batch \(b) not durable (durable: \(durable))")
                changedIn[vin] = nil
            }
            for vin in vins[(batch * 4)..<(batch * 4 + 4)] {
                book.apply(Self.change(vin, rtti: false, at: Int64(batch + 1)), inBatch: batch)
                changedIn[vin] = batch
            }
        }
        #expect(book.count < 40, "the book stayed bounded: \(book.count)")
    }

    @Test("a lane whose book holds 4 vehicles, among 60, applies a vehicle's stored consent each time it comes back")
    func laneReloadsForgottenConsent() async throws {
        let h = try PipelineHarness()
        var off = VehicleScript("WMW11DJ0X02A00099")
        try await h.produce([off.record(VehicleScript.consent(rtti: false))])
        let store = try await h.openStore()
        try await h.runLane(until: 1, store: store)

        // 60 other vehicles' probes, the off vehicle's probe among them three times.
        var others = (0..<60).map { VehicleScript(Self.vin($0).description) }
        var records: [[UInt8]] = []
        for _ in 0..<3 {
            for i in others.indices {
                records.append(others[i].record(VehicleScript.probe(points: 2, recordedAtMs: others[i].time + 1_000)))
            }
            records.append(off.record(VehicleScript.probe(points: 3, recordedAtMs: off.time + 1_000)))
        }
        try await h.produce(records)
        var configuration = h.configuration(group: "small-book", batchSize: 10)
        configuration.consentCacheVehicles = 4
        configuration.routingThreads = 1
        let s = try await h.runLane(until: records.count, store: store, configuration: configuration, timeout: .seconds(120))
        #expect(s.tally.droppedForConsent["rtti"] == 3, "dropped: \(s.tally.droppedForConsent)")
        #expect(try await store.probePointCount() == 60 * 3 * 2)
        await store.close()
    }

    @Test("after a revocation the states the store has are forgotten at once, those of batches not yet durable once they are, and those set after it kept")
    func revocationForgetsStored() {
        var book = ConsentBook(capacity: 1_000)
        let loaded = Self.vin(1), durableChange = Self.vin(2), pending = Self.vin(3), later = Self.vin(4)
        book.beginBatch(0, durableBatches: 0, revocations: 0)
        book.warm([loaded: StoredConsent(state: .defaults, recordedAtMs: 1, sequence: 1)])
        book.apply(Self.change(durableChange, rtti: false, at: 1), inBatch: 0)
        book.beginBatch(1, durableBatches: 0, revocations: 0)
        book.apply(Self.change(pending, rtti: false, at: 1), inBatch: 1)
        // Batch 2 begins after a rebalance took partitions away; batch 0 is durable, batch 1 not.
        book.beginBatch(2, durableBatches: 1, revocations: 1)
        #expect(!book.knows(loaded) && !book.knows(durableChange), "states the store has are loaded again")
        #expect(book.knows(pending), "a change not yet durable is the newest there is")
        #expect(book.state(of: pending).rtti == false)
        book.apply(Self.change(later, rtti: false, at: 1), inBatch: 2)
        book.beginBatch(3, durableBatches: 2, revocations: 1)
        #expect(!book.knows(pending), "forgotten once its batch is durable")
        #expect(book.knows(later), "a change after the revocation is kept")
        book.beginBatch(4, durableBatches: 4, revocations: 1)
        #expect(book.knows(later), "no new revocation, nothing more forgotten")
    }

    @Test("a lane whose partitions went to another instance and came back applies the consent that instance stored meanwhile")
    func laneForgetsAfterRebalance() async throws {
        let h = try PipelineHarness()
        var x = VehicleScript("WMW11DJ0X02A00098")
        let store = try await h.openStore()
        let group = "rebalanced-book"
        let lane = h.startLane(group: group, store: store)
        let total = h.topics.allIngress.count * 4
        // 1. The lane learns X's consent (RTTI on) and stores a probe of X.
        let on = x.record(VehicleScript.consent(rtti: true))
        try await h.produce([on])
        #expect(await eventually(timeout: .seconds(60)) { lane.committed >= 1 })
        try await h.produce([x.record(VehicleScript.probe(points: 4, recordedAtMs: x.time + 1_000))])
        #expect(await eventually(timeout: .seconds(60)) { lane.committed >= 2 })
        #expect(try await store.probePointCount() == 4)

        // 2. Another member joins the group: a rebalance takes the lane's
        // partitions (eager: all of them) and gives it back some.
        var other = h.configuration(group: group).consumer
        other.clientID = "other-instance"
        let member = try KafkaConsumer(configuration: other)
        try member.subscribe(h.topics.allIngress)
        let joined = await eventually(timeout: .seconds(60)) {
            _ = try? await member.poll(maxRecords: 1, timeoutMs: 100)
            return !member.assignment.isEmpty
        }
        #expect(joined, "the other member got partitions")
        // Meanwhile that instance stores X's switch-off (as if it had read it).
        var batch = StoreBatch()
        batch.consentChanges = [ConsentChange(vin: x.vin, state: ConsentState(
            teleservices: true, smartMaintenance: false, chargingHistory: true, chargingLocation: true, rtti: false, accountDeleted: false),
            recordedAtMs: x.time + 5_000, sequence: x.sequence + 100)]
        _ = try await store.apply(batch)

        // 3. It leaves: every partition is the lane's again.
        await member.close()
        #expect(await eventually(timeout: .seconds(60)) { lane.statistics.snapshot.assignedPartitions == total },
                "assigned: \(lane.statistics.snapshot.assignedPartitions) of \(total)")

        // 4. X's next probe: RTTI is off in the store, so it is dropped.
        try await h.produce([x.record(VehicleScript.probe(points: 5, recordedAtMs: x.time + 10_000))])
        #expect(await eventually(timeout: .seconds(60)) { lane.committed >= 3 })
        try await lane.running.stop()
        // (The first probe, if a rebalance delivered it again, is dropped too.)
        #expect((lane.statistics.snapshot.tally.droppedForConsent["rtti"] ?? 0) >= 1, "dropped: \(lane.statistics.snapshot.tally.droppedForConsent)")
        #expect(try await store.probePointCount() == 4, "the second probe is not stored")
        await store.close()
    }
}
