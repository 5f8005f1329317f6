import Synchronization

/// One transaction at a time on a connection shared by an actor's methods.
/// An actor is reentrant: while one method awaits its statements, another
/// may start, and a second BEGIN on the same connection fails ("cannot
/// start a transaction within a transaction"). Callers enter the gate
/// before BEGIN and leave it after COMMIT or ROLLBACK; waiters go in
/// arrival order.
final class TransactionGate: Sendable {
    private struct State: ~Copyable {
        var busy = false
        var waiters: [CheckedContinuation<Void, Never>] = []
    }
    private let state = Mutex(State())

    init() {}

    /// Waits until no transaction of this gate is open, then holds it.
    func enter() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let goAhead = state.withLock { s -> Bool in
                if s.busy {
                    s.waiters.append(continuation)
                    return false
                }
                s.busy = true
                return true
            }
            if goAhead { continuation.resume() }
        }
    }

    /// Lets the next waiter in (or frees the gate).
    func leave() {
        let next = state.withLock { s -> CheckedContinuation<Void, Never>? in
            if s.waiters.isEmpty {
                s.busy = false
                return nil
            }
            return s.waiters.removeFirst()
        }
        next?.resume()
    }
}
