import Foundation
@testable import TelematicsStores
import TelematicsTestSupport
import TelematicsWire
import Testing

/// A store actor shares one connection among its methods: a retention sweep
/// or an erase (the console's privacy API, the hourly retention pass) may
/// start while a batch's transaction awaits its statements.
@Suite("One transaction at a time on a store's connection")
struct ConcurrentTransactionTests {
    @Test("batches, sweeps and erases at the same time on one store: each batch whole, every point counted once, no transaction fails",
          arguments: StoreKind.allCases)
    func interleavedTransactions(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            let batches = 24
            let pointsPerBatch = 5
            try await withThrowingTaskGroup(of: Void.self) { group in
                for b in 0..<batches {
                    group.addTask {
                        // Each batch: a call (its own vehicle) and a probe in tile 7, minute t0.
                        let result = try await store.apply(StoreBatch(
                            teleserviceCalls: [call(vin(b + 1), 1, items: [oil(.overdue)])],
                            probePoints: points("p-\(b)", sequence: 1, count: pointsPerBatch, speedKmh: 50),
                            counters: ["processed.teleservice_call": 1]))
                        #expect(result.callsInserted == 1 && result.probePointsInserted == pointsPerBatch)
                    }
                    group.addTask {
                        // Nothing has expired and the vehicle is unknown: they delete nothing, but run their own transactions.
                        _ = try await store.sweep(.rawProbes, before: 0, limit: 100)
                        _ = try await store.erase(vin(900 + b), pseudonyms: ["nobody-\(b)"])
                    }
                }
                try await group.waitForAll()
            }
            let stats = try await store.stats()
            #expect(stats.teleserviceCalls == batches && stats.probePoints == batches * pointsPerBatch)
            let minute = try #require(try await store.trafficAggregates(tile: 7, fromMinute: t0, toMinute: t0).first)
            #expect(minute.pointCount == batches * pointsPerBatch && minute.vehicleCount == batches)
            #expect(try await store.counters()["processed.teleservice_call"] == batches)
        }
    }
}
