import ArgumentParser
import Foundation
import TelematicsKafka
import TelematicsWire

/// `telematics produce`: a capture file onto Kafka.
struct Produce: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Publish the records of a .tmcap capture to Kafka and wait until every one is durable.",
        discussion: """
            By default (--topic-per-kind) each record goes to the WIRE.md topic of its \
            envelope kind (byte 3), keyed by the VIN (envelope bytes 24..<41). Records \
            that cannot be routed that way (shorter than 41 bytes, or a kind byte that \
            is not 1 to 5) are skipped, counted, and reported on standard error.
            With --topic T every record goes to T unchecked (key = bytes 24..<41 when \
            present, else none): the way to feed invalid records to the pipeline.
            The producer is idempotent; the command ends after every delivery report \
            and exits with status 1 if any record failed.
            """
    )

    @OptionGroup var kafka: KafkaConnectionOptions

    @Flag(name: .customLong("topic-per-kind"), help: "Route each record to its kind's WIRE.md topic (the default).")
    var topicPerKind = false

    @Option(help: ArgumentHelp("Publish every record to this topic instead.", valueName: "TOPIC"))
    var topic: String?

    @Argument(help: ArgumentHelp("Capture file, or - for standard input.", valueName: "FILE.tmcap"))
    var file: String

    func validate() throws {
        if topicPerKind && topic != nil { throw ValidationError("--topic-per-kind and --topic exclude each other") }
    }

    func run() async throws {
        let config = try kafka.producerConfiguration(clientID: "telematics-produce")
        let outcome = try await Self.publish(file: file, topic: topic, configuration: config)
        let seconds = max(outcome.seconds, 1e-6)
        writeStandardError("""
            produce: \(grouped(outcome.records)) records, \(grouped(outcome.bytes)) bytes in \
            \(String(format: "%.2f", seconds)) s: \(grouped(Int(Double(outcome.records) / seconds))) records/s, \
            \(String(format: "%.1f", Double(outcome.bytes) / seconds / 1_048_576)) MiB/s\n
            """)
        for (topic, count) in outcome.byTopic.sorted(by: { $0.key < $1.key }) {
            writeStandardError("  \(topic): \(grouped(count))\n")
        }
        if outcome.skipped > 0 {
            writeStandardError("produce: warning: \(outcome.skipped) records skipped: too short for a kind and a VIN, or an unknown kind (use --topic to send them anyway)\n")
        }
        if let summary = outcome.summary, let error = summary.error {
            writeStandardError("produce: \(summary.enqueued - summary.delivered) of \(summary.enqueued) records NOT delivered: \(error)\n")
            throw ExitCode.failure
        }
    }

    struct Outcome: Sendable {
        var records = 0
        var bytes = 0
        var skipped = 0
        var seconds = 0.0
        var byTopic: [String: Int] = [:]
        var summary: KafkaDeliverySummary?
    }

    static func publish(file: String, topic: String?, configuration: KafkaProducerConfiguration) async throws -> Outcome {
        let reader = try CaptureReader(path: file)
        let producer = try KafkaProducer(configuration: configuration)
        let deliveries = producer.deliveries()
        let progress = Progress(label: "produce", unit: "records")
        let started = monotonicSeconds()
        var outcome = Outcome()
        let topics = MessageKind.allCases.map(\.defaultTopic)
        var perKind = [Int](repeating: 0, count: 6)
        while let record = try reader.next() {
            let key = record.count >= 41 ? UnsafeRawBufferPointer(rebasing: record[24..<41]) : nil
            let destination: String
            if let topic {
                destination = topic
            } else {
                guard key != nil, let kind = MessageKind(rawValue: record[3]) else {
                    outcome.skipped += 1
                    continue
                }
                destination = topics[Int(kind.rawValue) - 1]
                perKind[Int(kind.rawValue)] += 1
            }
            while try !producer.enqueue(topic: destination, key: key, value: record, into: deliveries) {
                await producer.waitForQueueSpace()
            }
            outcome.records += 1
            outcome.bytes += record.count
            if outcome.records & 0x3FF == 0 { progress.update(outcome.records, bytes: reader.bytesRead) }
        }
        outcome.summary = await deliveries.wait()
        progress.finish(outcome.records, bytes: reader.bytesRead)
        outcome.seconds = monotonicSeconds() - started
        if let topic {
            outcome.byTopic[topic] = outcome.records
        } else {
            for kind in MessageKind.allCases where perKind[Int(kind.rawValue)] > 0 {
                outcome.byTopic[kind.defaultTopic] = perKind[Int(kind.rawValue)]
            }
        }
        try await producer.close()
        return outcome
    }
}
