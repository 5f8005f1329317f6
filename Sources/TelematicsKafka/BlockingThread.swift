import Foundation

/// A dedicated OS thread that runs blocking librdkafka calls (or long
/// synchronous work, like routing a batch) one after the other, so they
/// never occupy a thread of Swift's cooperative pool; async callers await
/// the result through a continuation.
public final class BlockingThread: @unchecked Sendable {
    // Guarded by `condition`.
    private let condition = NSCondition()
    private var jobs: [() -> Void] = []
    private var stopping = false

    /// Starts the thread, named `name` (visible in debuggers and `top -H`).
    public init(name: String) {
        // The thread keeps `self` alive until `stop()` lets the loop end.
        let thread = Thread { [self] in loop() }
        thread.name = name
        thread.stackSize = 1 << 20
        thread.start()
    }

    private func loop() {
        while true {
            condition.lock()
            while jobs.isEmpty && !stopping { condition.wait() }
            if jobs.isEmpty {
                condition.unlock()
                return
            }
            let batch = jobs
            jobs.removeAll(keepingCapacity: true)
            condition.unlock()
            for job in batch { job() }
        }
    }

    /// Queues `job` without waiting for it.
    func submit(_ job: @escaping @Sendable () -> Void) {
        condition.lock()
        let accepted = !stopping
        if accepted {
            jobs.append(job)
            condition.signal()
        }
        condition.unlock()
        // After stop() the thread is gone: run inline rather than never.
        if !accepted { job() }
    }

    /// Runs `body` on the thread and returns its result.
    func run<T: Sendable>(_ body: @escaping @Sendable () throws(KafkaError) -> T) async throws(KafkaError) -> T {
        let result: Result<T, KafkaError> = await withCheckedContinuation { continuation in
            submit {
                do throws(KafkaError) { continuation.resume(returning: .success(try body())) } catch {
                    continuation.resume(returning: .failure(error))
                }
            }
        }
        return try result.get()
    }

    /// Runs `body`, which cannot fail, on the thread and returns its result.
    public func perform<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
        await withCheckedContinuation { continuation in
            submit { continuation.resume(returning: body()) }
        }
    }

    /// Lets queued jobs finish, then ends the thread (without waiting for it).
    public func stop() {
        condition.lock()
        stopping = true
        condition.broadcast()
        condition.unlock()
    }
}
