import Logging
import TelematicsKafka

/// How the lanes wait between attempts of a write that must not be skipped:
/// doubling from `initialMs` up to `maximumMs`.
struct RetryPolicy: Sendable {
    var initialMs: Int
    var maximumMs: Int
    var logger: Logger

    /// Runs `body` until it succeeds, waiting longer after each failure
    /// (`onFailure` sees each error first): a store that is down holds the
    /// lane; nothing is skipped. Only cancellation ends it early.
    func retrying<T>(_ what: String, onFailure: (any Error) -> Void = { _ in }, _ body: () async throws -> T) async throws -> T {
        var delay = initialMs
        while true {
            do {
                return try await body()
            } catch is CancellationError {
                throw CancellationError()
            } catch {
                onFailure(error)
                logger.warning("\(what) failed; retrying in \(delay) ms", metadata: ["error": "\(error)"])
                try await Task.sleep(for: .milliseconds(delay))
                delay = min(delay * 2, maximumMs)
            }
        }
    }

    /// Publishes `messages` and waits until Kafka has every one; failed ones
    /// are sent again (`onRetry` per round), so an output is never dropped.
    func deliver(_ messages: [KafkaProducerMessage], with producer: KafkaProducer, onRetry: () -> Void = {}) async throws {
        var pending = messages
        var delay = initialMs
        while !pending.isEmpty {
            let summary = try await producer.deliver(pending)
            let failed = Set(summary.failures.map(\.index))
            if failed.isEmpty && summary.unreported == 0 { return }
            onRetry()
            logger.warning("publish failed; retrying", metadata: ["failed": "\(failed.count)", "error": "\(summary.failures.first.map { "\($0)" } ?? "unreported")"])
            pending = summary.unreported > 0 ? pending : pending.enumerated().filter { failed.contains($0.offset) }.map(\.element)
            try await Task.sleep(for: .milliseconds(delay))
            delay = min(delay * 2, maximumMs)
        }
    }
}
