import Foundation

/// A topic partition.
public struct KafkaTopicPartition: Sendable, Hashable, Comparable, CustomStringConvertible {
    /// The topic.
    public var topic: String
    /// The partition number.
    public var partition: Int32
    /// Names a partition.
    public init(topic: String, partition: Int32) {
        self.topic = topic
        self.partition = partition
    }
    public var description: String { "\(topic)[\(partition)]" }
    public static func < (a: Self, b: Self) -> Bool { (a.topic, a.partition) < (b.topic, b.partition) }
}

/// A few figures from librdkafka's statistics JSON (`statistics.interval.ms`),
/// read once per interval, off the record path.
public struct KafkaStatistics: Sendable {
    /// librdkafka's wall clock time of the snapshot (microseconds since the epoch).
    public var timeMicroseconds: Int64 = 0
    /// Records waiting in the client (producer: not yet acknowledged).
    public var messagesInQueue: Int64 = 0
    /// Records sent to brokers since the client started.
    public var transmittedMessages: Int64 = 0
    /// Records received from brokers since the client started.
    public var receivedMessages: Int64 = 0
    /// Consumer lag per assigned partition (high watermark minus committed or
    /// consumed position), as librdkafka computes it; absent while unknown.
    public var consumerLag: [KafkaTopicPartition: Int64] = [:]

    /// The sum of ``consumerLag``.
    public var totalConsumerLag: Int64 { consumerLag.values.reduce(0, +) }

    /// Reads the fields above from a statistics document; nil when it is not JSON.
    /// Unknown or missing fields are skipped: the format grows between versions.
    public init?(json: UnsafeRawBufferPointer) {
        guard let object = try? JSONSerialization.jsonObject(with: Data(json)) as? [String: Any] else { return nil }
        func int(_ any: Any?) -> Int64? { (any as? NSNumber)?.int64Value }
        timeMicroseconds = int(object["time"]).map { $0 * 1_000_000 } ?? 0
        messagesInQueue = int(object["msg_cnt"]) ?? 0
        transmittedMessages = int(object["txmsgs"]) ?? 0
        receivedMessages = int(object["rxmsgs"]) ?? 0
        if let topics = object["topics"] as? [String: Any] {
            for (topic, value) in topics {
                guard let partitions = (value as? [String: Any])?["partitions"] as? [String: Any] else { continue }
                for (key, p) in partitions {
                    // -1 is librdkafka's internal unassigned partition.
                    guard let number = Int32(key), number >= 0, let p = p as? [String: Any] else { continue }
                    guard let lag = int(p["consumer_lag"]), lag >= 0 else { continue }
                    consumerLag[KafkaTopicPartition(topic: topic, partition: number)] = lag
                }
            }
        }
    }
}
