import CRdKafka

/// Where the Kafka cluster is: `host:port` pairs, as `bootstrap.servers` takes them.
public struct KafkaBootstrap: Sendable, Hashable, CustomStringConvertible {
    /// The `host:port` addresses.
    public var servers: [String]
    /// Addresses given one by one.
    public init(_ servers: [String]) { self.servers = servers }
    /// Addresses as a comma-separated list (`"127.0.0.1:9092,127.0.0.1:9093"`).
    public init(_ list: String) {
        servers = list.split(separator: ",").map { $0.trimmingSpaces() }.filter { !$0.isEmpty }
    }
    /// The comma-separated list.
    public var description: String { servers.joined(separator: ",") }
}

/// The producer's compression codec (`compression.codec`). Bodies are
/// already zstd frames, so batch compression mostly squeezes the envelope
/// headers and keys; lz4 is cheapest on CPU, zstd densest.
public enum KafkaCompression: String, Sendable, CaseIterable {
    case none, gzip, snappy, lz4, zstd
}

/// Where a consumer group starts on a partition that has no committed offset.
public enum KafkaOffsetReset: String, Sendable, CaseIterable {
    /// From the oldest retained record: nothing that was written is skipped.
    case earliest
    /// From the next record written.
    case latest
}

/// How a consumer group spreads partitions over its members.
public enum KafkaAssignmentStrategy: String, Sendable, CaseIterable {
    /// Eager: contiguous ranges of each topic's partitions.
    case range
    /// Eager: partitions dealt out in turn.
    case roundRobin = "roundrobin"
    /// Incremental (cooperative) rebalancing: only moved partitions are revoked.
    case cooperativeSticky = "cooperative-sticky"
}

/// Settings of a ``KafkaConsumer``. Every field maps to a librdkafka
/// property; ``properties`` passes anything else through (and wins).
public struct KafkaConsumerConfiguration: Sendable {
    /// The cluster.
    public var bootstrap: KafkaBootstrap
    /// The consumer group (`group.id`).
    public var groupID: String
    /// `client.id`, shown in broker logs and metrics.
    public var clientID: String = "telematics-consumer"
    /// Where to start without a committed offset.
    public var offsetReset: KafkaOffsetReset = .earliest
    /// The partition assignment strategy.
    public var assignmentStrategy: KafkaAssignmentStrategy = .range
    /// The most records one ``KafkaConsumer/poll(maxRecords:timeoutMs:)`` returns by default.
    public var batchSize: Int = 1000
    /// How long a poll waits to fill a batch, by default (milliseconds).
    public var batchTimeoutMs: Int = 100
    /// `session.timeout.ms`: a member silent this long is dropped from the group.
    public var sessionTimeoutMs: Int = 10_000
    /// `max.poll.interval.ms`: the longest allowed gap between polls.
    public var maxPollIntervalMs: Int = 300_000
    /// `statistics.interval.ms`; 0 turns statistics (and lag figures) off.
    public var statisticsIntervalMs: Int = 0
    /// `fetch.max.bytes`: the largest fetch response.
    public var fetchMaxBytes: Int = 52_428_800
    /// `queued.max.messages.kbytes`: how much the client prefetches per partition.
    public var queuedMaxKilobytes: Int = 65_536
    /// Any other librdkafka property, applied last.
    public var properties: [String: String] = [:]

    /// A configuration with defaults for everything but the cluster and the group.
    public init(bootstrap: KafkaBootstrap, groupID: String) {
        self.bootstrap = bootstrap
        self.groupID = groupID
    }

    /// The librdkafka properties this configuration sets, in application order.
    public var librdkafkaProperties: [(String, String)] {
        var p: [(String, String)] = [
            ("bootstrap.servers", bootstrap.description),
            ("group.id", groupID),
            ("client.id", clientID),
            // Offsets are committed explicitly, only for records the caller has finished.
            ("enable.auto.commit", "false"),
            ("enable.auto.offset.store", "false"),
            ("auto.offset.reset", offsetReset.rawValue),
            ("partition.assignment.strategy", assignmentStrategy.rawValue),
            ("session.timeout.ms", String(sessionTimeoutMs)),
            ("max.poll.interval.ms", String(maxPollIntervalMs)),
            ("statistics.interval.ms", String(statisticsIntervalMs)),
            ("fetch.max.bytes", String(fetchMaxBytes)),
            ("queued.max.messages.kbytes", String(queuedMaxKilobytes)),
        ]
        p.append(contentsOf: properties.sorted { $0.key < $1.key }.map { ($0.key, $0.value) })
        return p
    }
}

/// Settings of a ``KafkaProducer``. Idempotence is always on (no
/// duplicates or reordering from retries); ``properties`` passes anything
/// else through (and wins).
public struct KafkaProducerConfiguration: Sendable {
    /// The cluster.
    public var bootstrap: KafkaBootstrap
    /// `client.id`.
    public var clientID: String = "telematics-producer"
    /// `compression.codec`.
    public var compression: KafkaCompression = .lz4
    /// `linger.ms`: how long to wait to fill a batch before sending.
    public var lingerMs: Int = 5
    /// `batch.num.messages`: the most records in one produce batch.
    public var batchSize: Int = 10_000
    /// `batch.size`: the most bytes in one produce batch.
    public var batchBytes: Int = 1_000_000
    /// `queue.buffering.max.messages`: records waiting locally before enqueue reports a full queue.
    public var queueMaxMessages: Int = 100_000
    /// `message.timeout.ms`: a record not acknowledged in this time fails (0 = never).
    public var messageTimeoutMs: Int = 300_000
    /// `statistics.interval.ms`; 0 turns statistics off.
    public var statisticsIntervalMs: Int = 0
    /// Any other librdkafka property, applied last.
    public var properties: [String: String] = [:]

    /// A configuration with defaults for everything but the cluster.
    public init(bootstrap: KafkaBootstrap) {
        self.bootstrap = bootstrap
    }

    /// The librdkafka properties this configuration sets, in application order.
    public var librdkafkaProperties: [(String, String)] {
        var p: [(String, String)] = [
            ("bootstrap.servers", bootstrap.description),
            ("client.id", clientID),
            // Idempotence implies acks=all and bounded in-flight requests:
            // retries can neither duplicate nor reorder a vehicle's messages.
            ("enable.idempotence", "true"),
            ("compression.codec", compression.rawValue),
            ("linger.ms", String(lingerMs)),
            ("batch.num.messages", String(batchSize)),
            ("batch.size", String(batchBytes)),
            ("queue.buffering.max.messages", String(queueMaxMessages)),
            ("message.timeout.ms", String(messageTimeoutMs)),
            ("statistics.interval.ms", String(statisticsIntervalMs)),
        ]
        p.append(contentsOf: properties.sorted { $0.key < $1.key }.map { ($0.key, $0.value) })
        return p
    }
}

/// Settings of a ``KafkaAdmin`` client.
public struct KafkaAdminConfiguration: Sendable {
    /// The cluster.
    public var bootstrap: KafkaBootstrap
    /// `client.id`.
    public var clientID: String = "telematics-admin"
    /// Any other librdkafka property, applied last.
    public var properties: [String: String] = [:]

    /// A configuration with defaults for everything but the cluster.
    public init(bootstrap: KafkaBootstrap) { self.bootstrap = bootstrap }

    var librdkafkaProperties: [(String, String)] {
        [("bootstrap.servers", bootstrap.description), ("client.id", clientID)]
            + properties.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
    }
}

/// Property names whose values are masked when a configuration is printed.
let secretPropertyMarkers = ["password", "secret", "sasl.oauthbearer.config", "ssl.key.pem", "ssl_key"]

/// `properties` as `key=value` lines for a log, secrets masked.
public func describeKafkaProperties(_ properties: [(String, String)]) -> String {
    properties.map { key, value in
        let secret = secretPropertyMarkers.contains { key.contains($0) }
        return "\(key)=\(secret ? "****" : value)"
    }.joined(separator: "\n")
}

/// Checks that librdkafka knows every property and accepts its value (as a
/// client would at creation, without creating one or connecting).
public func checkKafkaProperties(_ properties: [(String, String)]) throws(KafkaError) {
    rd_kafka_conf_destroy(try makeConf(properties, context: "kafka-property"))
}

/// Builds an `rd_kafka_conf_t` from properties; the caller owns the result
/// until it passes it to `rd_kafka_new` (which takes it over on success).
func makeConf(_ properties: [(String, String)], context: String) throws(KafkaError) -> OpaquePointer {
    let conf = rd_kafka_conf_new()!
    for (key, value) in properties {
        let (result, text) = withErrorBuffer { buffer, size in
            rd_kafka_conf_set(conf, key, value, buffer, size)
        }
        guard result == RD_KAFKA_CONF_OK else {
            rd_kafka_conf_destroy(conf)
            throw KafkaError(.invalidConfiguration, message: text, context: "\(context): property \(key)")
        }
    }
    return conf
}

/// Creates a client from `conf` (taken over on success, destroyed on failure).
func makeClient(_ type: rd_kafka_type_t, conf: OpaquePointer, context: String) throws(KafkaError) -> OpaquePointer {
    let (handle, text) = withErrorBuffer { buffer, size in rd_kafka_new(type, conf, buffer, size) }
    guard let handle else {
        rd_kafka_conf_destroy(conf)
        throw KafkaError(.invalidConfiguration, message: text, context: context)
    }
    return handle
}

extension Substring {
    func trimmingSpaces() -> String {
        String(drop { $0 == " " }.reversed().drop { $0 == " " }.reversed())
    }
}
