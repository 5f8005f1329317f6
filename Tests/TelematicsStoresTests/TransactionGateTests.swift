import Synchronization
@testable import TelematicsStores
import Testing

@Suite("Transaction gate")
struct TransactionGateTests {
    /// Records the order in which holders got in.
    final class Order: Sendable {
        let entries = Mutex<[String]>([])
        func note(_ name: String) { entries.withLock { $0.append(name) } }
        var all: [String] { entries.withLock { $0 } }
    }

    @Test("one holder at a time; an urgent waiter (an HV warn call's alert) goes before every ordinary one, otherwise arrival order")
    func urgentFirst() async throws {
        let gate = TransactionGate()
        let order = Order()
        await gate.enter()  // held: everyone below queues
        var tasks: [Task<Void, Never>] = []
        for name in ["p1-a", "p1-b", "P0"] {
            tasks.append(Task {
                await gate.enter(urgent: name == "P0")
                order.note(name)
                gate.leave()
            })
            // Let each queue before the next arrives.
            try await Task.sleep(for: .milliseconds(50))
        }
        #expect(order.all.isEmpty, "nobody gets in while the gate is held")
        gate.leave()
        for task in tasks { await task.value }
        #expect(order.all == ["P0", "p1-a", "p1-b"])
    }
}
