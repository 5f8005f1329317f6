@testable import TelematicsPipeline
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
        book.apply(Self.change(hot, rtti: false, at: 1))
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
        book.apply(Self.change(changed, rtti: false, at: 1))
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
                book.apply(Self.change(vin, rtti: false, at: Int64(batch + 1)))
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
}
