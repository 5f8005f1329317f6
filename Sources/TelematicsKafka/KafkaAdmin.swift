import CRdKafka

/// A topic to create.
public struct KafkaTopicSpecification: Sendable, Hashable {
    /// The topic name.
    public var name: String
    /// Number of partitions.
    public var partitions: Int
    /// Copies of each partition; -1 takes the broker default.
    public var replicationFactor: Int
    /// Topic configuration (`cleanup.policy=compact`, `retention.ms`...).
    public var config: [String: String]
    /// A topic `name` with `partitions` partitions.
    public init(name: String, partitions: Int, replicationFactor: Int = -1, config: [String: String] = [:]) {
        self.name = name
        self.partitions = partitions
        self.replicationFactor = replicationFactor
        self.config = config
    }
}

/// What happened to one topic of a create request.
public enum KafkaTopicCreation: Sendable, Hashable {
    /// The topic was created.
    case created
    /// It existed already (not an error: creation is idempotent).
    case alreadyExisted
}

/// Administrative operations (topic creation) through librdkafka's Admin
/// API; requests run on a dedicated thread.
public final class KafkaAdmin: @unchecked Sendable {
    // rd_kafka_t is thread-safe; immutable after init.
    private let handle: OpaquePointer
    private let blocking = BlockingThread(name: "kafka-admin")

    /// An admin client of the cluster.
    public init(configuration: KafkaAdminConfiguration) throws(KafkaError) {
        let conf = try makeConf(configuration.librdkafkaProperties, context: "admin configuration")
        // Admin clients are producer-type handles that never produce.
        handle = try makeClient(RD_KAFKA_PRODUCER, conf: conf, context: "admin client")
    }

    deinit {
        let rk = SendableHandle(handle)
        blocking.submit { rd_kafka_destroy(rk.raw) }
        blocking.stop()
    }

    /// Creates `topics`, returning each one's outcome by name; a topic that
    /// exists already is ``KafkaTopicCreation/alreadyExisted``, any other
    /// failure throws (naming the topic).
    public func createTopics(_ topics: [KafkaTopicSpecification], timeoutMs: Int32 = 30_000) async throws(KafkaError) -> [String: KafkaTopicCreation] {
        guard !topics.isEmpty else { return [:] }
        let rk = SendableHandle(handle)
        return try await blocking.run { () throws(KafkaError) in
            var newTopics: [OpaquePointer?] = []
            defer { newTopics.forEach { rd_kafka_NewTopic_destroy($0) } }
            for spec in topics {
                let (topic, text) = withErrorBuffer { buffer, size in
                    rd_kafka_NewTopic_new(spec.name, Int32(clamping: spec.partitions), Int32(clamping: spec.replicationFactor), buffer, size)
                }
                guard let topic else { throw KafkaError(.invalidConfiguration, message: text, context: "topic \(spec.name)") }
                newTopics.append(topic)
                for (key, value) in spec.config.sorted(by: { $0.key < $1.key }) {
                    let err = rd_kafka_NewTopic_set_config(topic, key, value)
                    guard err == RD_KAFKA_RESP_ERR_NO_ERROR else { throw KafkaError(err, context: "topic \(spec.name) config \(key)") }
                }
            }
            let resultQueue = rd_kafka_queue_new(rk.raw)!
            defer { rd_kafka_queue_destroy(resultQueue) }
            let options = rd_kafka_AdminOptions_new(rk.raw, RD_KAFKA_ADMIN_OP_CREATETOPICS)
            defer { rd_kafka_AdminOptions_destroy(options) }
            _ = withErrorBuffer { buffer, size in rd_kafka_AdminOptions_set_operation_timeout(options, timeoutMs, buffer, size) }
            _ = withErrorBuffer { buffer, size in rd_kafka_AdminOptions_set_request_timeout(options, timeoutMs, buffer, size) }
            newTopics.withUnsafeMutableBufferPointer { rd_kafka_CreateTopics(rk.raw, $0.baseAddress, $0.count, options, resultQueue) }

            // The result arrives as one event; allow a little past the request timeout.
            guard let event = rd_kafka_queue_poll(resultQueue, Int32(clamping: Int(timeoutMs) + 5_000)) else {
                throw KafkaError(.timedOut, context: "create topics")
            }
            defer { rd_kafka_event_destroy(event) }
            let eventError = rd_kafka_event_error(event)
            guard eventError == RD_KAFKA_RESP_ERR_NO_ERROR else {
                throw KafkaError(KafkaError.Code(eventError), message: rd_kafka_event_error_string(event).map { String(cString: $0) }, context: "create topics")
            }
            guard let result = rd_kafka_event_CreateTopics_result(event) else {
                throw KafkaError(.state, message: "unexpected admin event", context: "create topics")
            }
            var count = 0
            let results = rd_kafka_CreateTopics_result_topics(result, &count)
            var outcome: [String: KafkaTopicCreation] = [:]
            for i in 0..<count {
                guard let r = results?[i] else { continue }
                let name = String(cString: rd_kafka_topic_result_name(r))
                let err = rd_kafka_topic_result_error(r)
                switch err {
                case RD_KAFKA_RESP_ERR_NO_ERROR: outcome[name] = .created
                case RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS: outcome[name] = .alreadyExisted
                default:
                    throw KafkaError(
                        KafkaError.Code(err), message: rd_kafka_topic_result_error_string(r).map { String(cString: $0) },
                        context: "create topic \(name)")
                }
            }
            return outcome
        }
    }

    /// The partition count of every topic in the cluster (a metadata request).
    public func topicPartitionCounts(timeoutMs: Int32 = 10_000) async throws(KafkaError) -> [String: Int] {
        let rk = SendableHandle(handle)
        return try await blocking.run { () throws(KafkaError) in
            var metadata: UnsafePointer<rd_kafka_metadata>?
            let err = rd_kafka_metadata(rk.raw, 1, nil, &metadata, timeoutMs)
            guard err == RD_KAFKA_RESP_ERR_NO_ERROR, let metadata else { throw KafkaError(err, context: "metadata") }
            defer { rd_kafka_metadata_destroy(metadata) }
            var out: [String: Int] = [:]
            for t in UnsafeBufferPointer(start: metadata.pointee.topics, count: Int(metadata.pointee.topic_cnt))
            where t.err == RD_KAFKA_RESP_ERR_NO_ERROR {
                out[String(cString: t.topic)] = Int(t.partition_cnt)
            }
            return out
        }
    }
}
