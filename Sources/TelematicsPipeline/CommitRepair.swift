import Logging
import TelematicsKafka

/// Commits a lane's durable offsets again when the group's may have fallen
/// behind them. That happens two ways: a background commit failed
/// (librdkafka does not retry it), or a commit retried by librdkafka was
/// accepted after a later one and set the offsets back
/// (``KafkaConsumer/commitsOvertaken``), both reported as success. A lane's
/// next batches commit only their own partitions, so a partition that
/// receives nothing more (an idle lane above all) would keep its old offset:
/// lag shown, records delivered again after a crash. So after either, the
/// lane commits every durable offset again, once a second at most, until no
/// new failure or overtaking shows.
struct CommitRepair {
    /// The consumer's counts when the lane last committed again.
    private(set) var seen = (failed: 0, overtaken: 0)
    private var next = ContinuousClock.now

    /// Commits `durable`'s offsets again if a commit failed or was overtaken
    /// since the last call that did; whether it did.
    mutating func check(_ consumer: KafkaConsumer, durable: DurableOffsets, logger: Logger) -> Bool {
        let now = (failed: consumer.commitCounts.failed, overtaken: consumer.commitsOvertaken)
        guard now != seen, ContinuousClock.now >= next else { return false }
        let cause = now.failed > seen.failed
            ? "a background commit failed (\(consumer.lastCommitError.map { "\($0)" } ?? "?"))"
            : "a retried commit was accepted after a later one"
        seen = now
        next = .now + .seconds(1)
        logger.warning("\(cause); committing the durable offsets again")
        try? consumer.commitInBackground(durable.all)
        return true
    }
}
