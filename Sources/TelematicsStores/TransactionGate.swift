import Synchronization

/// One transaction at a time on a connection shared by an actor's methods.
/// An actor is reentrant: while one method awaits its statements, another
/// may start, and a second BEGIN on the same connection fails ("cannot
/// start a transaction within a transaction"). Callers enter the gate
/// before BEGIN and leave it after COMMIT or ROLLBACK; waiters go in
/// arrival order, but an urgent one (an emergency alert) goes before every
/// waiter that is not.
final class TransactionGate: Sendable {
    private struct State: ~Copyable {
        var busy = false
        var urgent: [CheckedContinuation<Void, Never>] = []
        var waiters: [CheckedContinuation<Void, Never>] = []
    }
    private let state = Mutex(State())

    init() {}

    /// Waits until no transaction of this gate is open, then holds it;
    /// `urgent` callers are let in before the others.
    func enter(urgent isUrgent: Bool = false) async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let goAhead = state.withLock { s -> Bool in
                if s.busy {
                    if isUrgent { s.urgent.append(continuation) } else { s.waiters.append(continuation) }
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
            if !s.urgent.isEmpty { return s.urgent.removeFirst() }
            if s.waiters.isEmpty {
                s.busy = false
                return nil
            }
            return s.waiters.removeFirst()
        }
        next?.resume()
    }
}
