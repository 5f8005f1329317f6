import ArgumentParser
import FleetSimulator
import Foundation
import Synchronization
import TelematicsKafka
import TelematicsWire

#if canImport(Glibc)
import Glibc
#endif

/// `telematics bench-alerts`: the tools of `Benchmarks/alert-latency.sh`
/// (issue 5): an all-RTTI backlog capture, and the client that measures how
/// long an HV warn call takes to come out as an alert on `callcentre.alerts`.
struct BenchAlerts: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench-alerts",
        abstract: "Alert latency benchmark tools: an RTTI backlog capture, and an HV warn call to alert latency client.",
        subcommands: [Measure.self, RttiCapture.self]
    )

    /// `telematics bench-alerts rtti-capture`: a capture of RTTI probes only,
    /// the bulk load the alerts must overtake.
    struct RttiCapture: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "rtti-capture",
            abstract: "Write a capture of simulated RTTI probes only (the simulator's vehicles and probes, no other kind).")

        @Option(help: ArgumentHelp("The capture to write.", valueName: "FILE.tmcap"))
        var out: String

        @Option(help: ArgumentHelp("Number of records.", valueName: "N"))
        var records: Int = 1_000_000

        @Option(help: "Number of vehicles.")
        var vehicles: Int = 20_000

        @Option(help: "Seed of every random choice.")
        var seed: UInt64 = 11

        func validate() throws {
            guard records >= 1, vehicles >= 1 else { throw ValidationError("--records and --vehicles must be at least 1") }
        }

        func run() throws {
            // The simulator's default start time: the same arguments give the same capture.
            let config = FleetSimulator.Configuration(
                vehicles: vehicles, seed: seed, ratePerSecond: 20_000,
                mix: FleetSimulator.Mix(rtti: 1, teleservice: 0, charging: 0, consent: 0, hvWarn: 0))
            var fleet = try FleetSimulator(configuration: config)
            let writer = try CaptureWriter(path: out)
            let progress = Progress(label: "rtti-capture", unit: "records")
            for i in 0..<records {
                let record = fleet.next()
                precondition(record.kind == .rttiProbe)
                try writer.append(record.value)
                if i & 0x3FF == 0 { progress.update(i) }
            }
            try writer.close()
            progress.finish(records)
            writeStandardError("rtti-capture: \(grouped(records)) RTTI records written to \(out)\n")
        }
    }

    /// `telematics bench-alerts measure`: sends HV warn calls at a steady
    /// interval and times each one's alert.
    struct Measure: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Send HV warn calls and time each one until its alert is read from the alert topic.",
            discussion: """
                Each call has its own VIN and event id (never a repeat the desk would \
                swallow). Calls are sent on a fixed schedule (--interval-ms apart, whether \
                or not earlier alerts came back), each stamped just before it is handed to \
                the producer; a consumer in a fresh group reads the alert topic from the \
                beginning and matches alerts by (vin, event_id), stamping each as soon as \
                its poll returns. Both stamps come from this process's monotonic clock, so \
                latency = receive - send needs no clock agreement. Before measuring, \
                warm-up calls are sent until one alert comes back (the pipeline's lanes \
                have joined their groups) and then --warmup more; none of them counts.
                Writes one JSON line per measured call to --out: i, vin, event_id, \
                sent_unix_ms, latency_ms (null if the alert never came), alert_ts_unix_ms \
                (the alert record's Kafka timestamp) and alert_partition. Exits 1 if any \
                alert is missing after --timeout.
                """)

        @OptionGroup var kafka: KafkaConnectionOptions

        @Option(help: "Measured calls.")
        var count: Int = 1_000

        @Option(help: "Warm-up calls after the first alert came back (not measured).")
        var warmup: Int = 20

        @Option(name: .customLong("interval-ms"), help: "Milliseconds between two calls.")
        var intervalMs: Double = 20

        @Option(help: "Names this run in event ids and the output (idle, loaded, ...).")
        var label: String = "run"

        @Option(help: ArgumentHelp("JSON Lines of every measured call.", valueName: "FILE"))
        var out: String?

        @Option(help: ArgumentHelp("Seconds to wait for the alerts still out after the last call.", valueName: "S"))
        var timeout: Double = 30

        @Option(name: .customLong("ready-timeout"), help: ArgumentHelp("Seconds to wait for the first warm-up alert.", valueName: "S"))
        var readyTimeout: Double = 120

        @Option(name: .customLong("hv-topic"), help: "Topic of HV warn calls.")
        var hvTopic: String = MessageKind.hvWarnCall.defaultTopic

        @Option(name: .customLong("alerts-topic"), help: "Topic of call-centre alerts.")
        var alertsTopic: String = "callcentre.alerts"

        @Option(name: .customLong("fetch-wait-ms"), help: ArgumentHelp("fetch.wait.max.ms of this client's alert consumer.", valueName: "MS"))
        var fetchWaitMs: Int = 10

        func validate() throws {
            guard count >= 1, warmup >= 0 else { throw ValidationError("--count must be at least 1, --warmup at least 0") }
            guard intervalMs > 0 else { throw ValidationError("--interval-ms must be positive") }
            if kafka.brokers == nil { throw ValidationError("--brokers is required") }
        }

        func run() async throws {
            let runID = String(UInt32.random(in: 0...UInt32.max), radix: 36)
            // Vehicles: the simulator's (valid VINs), one per call, warm-up included.
            let fleet = try FleetSimulator(configuration: .init(vehicles: count + warmup + 1_000, seed: UInt64.random(in: 1...UInt64.max)))
            let vins = fleet.vins
            let compressor = try ZstdCompressor(level: 3)
            let tracker = Tracker()

            var producerConfig = try kafka.producerConfiguration(clientID: "bench-alerts-\(label)")
            producerConfig.lingerMs = 0
            let producer = try KafkaProducer(configuration: producerConfig)
            let deliveries = producer.deliveries()

            var consumerConfig = KafkaConsumerConfiguration(bootstrap: producerConfig.bootstrap, groupID: "bench-alerts-\(label)-\(runID)")
            consumerConfig.clientID = "bench-alerts-\(label)"
            consumerConfig.offsetReset = .earliest
            consumerConfig.properties = producerConfig.properties
            consumerConfig.properties["fetch.wait.max.ms"] = String(fetchWaitMs)
            let consumer = try KafkaConsumer(configuration: consumerConfig)
            try consumer.subscribe([alertsTopic])

            let receiving = Task { try await Self.receive(consumer, tracker: tracker) }
            defer { receiving.cancel() }

            var next = 0
            func send(_ id: String) throws -> Int {
                let vin = vins[next % vins.count]
                next += 1
                var call = HvWarnCall()
                call.eventID = id
                call.thermal = .temperatureRise
                call.powertrain = .bev
                call.position = Position(latE7: 556_761_000, lonE7: 125_683_000)
                call.vehicleState = .parked
                call.maxCellTempDc = 700
                call.socPermille = 640
                let message = TelematicsMessage(
                    vin: vin, sequence: UInt64(next), recordedAtMs: Int64(Date().timeIntervalSince1970 * 1000), body: .hvWarnCall(call))
                let value = EnvelopeWriter.record(message, compressor: compressor)
                let key = vin.description
                let index = tracker.sent(key: key + "|" + id, vin: key, eventID: id)
                let enqueued = try Array(key.utf8).withUnsafeBytes { k in
                    try value.withUnsafeBytes { v in try producer.enqueue(topic: hvTopic, key: k, value: v, into: deliveries) }
                }
                guard enqueued else { throw ValidationError("the producer's local queue is full") }
                return index
            }

            // Warm-up: until one alert is back (both lanes have joined), then --warmup more.
            let readyBy = monotonicSeconds() + readyTimeout
            var firstWarmup: Int?
            while true {
                let index = try send("bench-\(runID)-\(label)-warmup-\(next)")
                if firstWarmup == nil { firstWarmup = index }
                try await Task.sleep(for: .milliseconds(100))
                if tracker.receivedCount > 0 { break }
                if monotonicSeconds() > readyBy {
                    writeStandardError("bench-alerts: no alert within \(Int(readyTimeout)) s of the first warm-up call; is the pipeline running?\n")
                    throw ExitCode.failure
                }
            }
            let readyAfter = monotonicSeconds() - (readyBy - readyTimeout)
            for _ in 0..<warmup {
                _ = try send("bench-\(runID)-\(label)-warmup-\(next)")
                try await Task.sleep(for: .milliseconds(intervalMs))
            }

            // Measured calls, on a fixed schedule (open loop).
            let interval = intervalMs / 1000
            let start = monotonicSeconds() + interval
            let measuredFrom = tracker.sentCount
            for i in 0..<count {
                let due = start + Double(i) * interval
                let wait = due - monotonicSeconds()
                if wait > 0 { try await Task.sleep(for: .nanoseconds(Int64(wait * 1e9))) }
                _ = try send("bench-\(runID)-\(label)-\(i)")
            }
            let sendSeconds = monotonicSeconds() - start
            let waitUntil = monotonicSeconds() + timeout
            while tracker.missing(from: measuredFrom) > 0 && monotonicSeconds() < waitUntil {
                try await Task.sleep(for: .milliseconds(20))
            }
            receiving.cancel()
            let summary = await deliveries.wait()
            try? await producer.close(timeoutMs: 5_000)
            await consumer.close()
            if let error = summary.error {
                writeStandardError("bench-alerts: \(summary.enqueued - summary.delivered) calls NOT delivered: \(error)\n")
            }

            let samples = tracker.samples(from: measuredFrom)
            var lines = ""
            for (i, s) in samples.enumerated() {
                var line: [String] = [
                    "\"i\":\(i)", "\"label\":\(jsonString(label))", "\"vin\":\(jsonString(s.vin))", "\"event_id\":\(jsonString(s.eventID))",
                    "\"sent_unix_ms\":\(String(format: "%.3f", s.sentUnixMs))",
                ]
                if let r = s.receivedMono {
                    line.append("\"latency_ms\":\(String(format: "%.3f", (r - s.sentMono) * 1000))")
                    line.append("\"alert_ts_unix_ms\":\(s.alertTimestampMs.map(String.init) ?? "null")")
                    line.append("\"alert_partition\":\(s.alertPartition.map(String.init) ?? "null")")
                } else {
                    line.append("\"latency_ms\":null")
                }
                lines += "{" + line.joined(separator: ",") + "}\n"
            }
            if let out { try lines.write(toFile: out, atomically: true, encoding: .utf8) }

            let latencies = samples.compactMap { s in s.receivedMono.map { ($0 - s.sentMono) * 1000 } }.sorted()
            func pct(_ p: Double) -> String {
                latencies.isEmpty ? "-" : String(format: "%.1f", latencies[min(latencies.count - 1, Int((Double(latencies.count) * p).rounded(.up)) - 1)])
            }
            let lost = samples.count - latencies.count
            writeStandardError("""
                bench-alerts \(label): \(latencies.count) of \(samples.count) alerts back (\(lost) missing), \
                sent over \(String(format: "%.1f", sendSeconds)) s after a \(String(format: "%.1f", readyAfter)) s warm-up; \
                latency ms p50 \(pct(0.5)), p99 \(pct(0.99)), max \(latencies.last.map { String(format: "%.1f", $0) } ?? "-"); \
                other alerts read \(tracker.foreignCount)\n
                """)
            if lost > 0 || summary.error != nil { throw ExitCode.failure }
        }

        /// Reads alerts until cancelled, stamping each as its poll returns.
        static func receive(_ consumer: KafkaConsumer, tracker: Tracker) async throws {
            struct AlertKey: Decodable {
                var vin: String
                var event_id: String?
            }
            let decoder = JSONDecoder()
            while !Task.isCancelled {
                var batch = try await consumer.poll(maxRecords: 256, timeoutMs: 0)
                if batch.isEmpty {
                    batch.release()
                    batch = try await consumer.poll(maxRecords: 1, timeoutMs: 100)
                }
                let now = monotonicSeconds()
                for record in batch {
                    guard let alert = try? decoder.decode(AlertKey.self, from: Data(record.value)), let event = alert.event_id else {
                        tracker.foreign()
                        continue
                    }
                    tracker.received(key: alert.vin + "|" + event, at: now, timestampMs: record.timestampMs, partition: record.partition)
                }
                batch.release()
            }
        }
    }

    /// Sent calls and their alerts, shared by the sender and the receiver.
    final class Tracker: Sendable {
        struct Sample: Sendable {
            var vin: String
            var eventID: String
            var sentMono: Double
            var sentUnixMs: Double
            var receivedMono: Double?
            var alertTimestampMs: Int64?
            var alertPartition: Int32?
        }
        private struct State {
            var samples: [Sample] = []
            var index: [String: Int] = [:]
            var received = 0
            var foreign = 0
            var duplicates = 0
        }
        private let state = Mutex(State())

        /// Records a call about to be sent (stamped now); returns its index.
        func sent(key: String, vin: String, eventID: String) -> Int {
            var ts = timespec()
            clock_gettime(CLOCK_REALTIME, &ts)
            let unixMs = Double(ts.tv_sec) * 1000 + Double(ts.tv_nsec) / 1e6
            return state.withLock { s in
                s.index[key] = s.samples.count
                s.samples.append(Sample(vin: vin, eventID: eventID, sentMono: monotonicSeconds(), sentUnixMs: unixMs))
                return s.samples.count - 1
            }
        }

        func received(key: String, at time: Double, timestampMs: Int64?, partition: Int32) {
            state.withLock { s in
                guard let i = s.index[key] else { s.foreign += 1; return }
                if s.samples[i].receivedMono != nil { s.duplicates += 1; return }
                s.samples[i].receivedMono = time
                s.samples[i].alertTimestampMs = timestampMs
                s.samples[i].alertPartition = partition
                s.received += 1
            }
        }

        func foreign() { state.withLock { $0.foreign += 1 } }
        var receivedCount: Int { state.withLock { $0.received } }
        var sentCount: Int { state.withLock { $0.samples.count } }
        var foreignCount: Int { state.withLock { $0.foreign } }
        func missing(from: Int) -> Int { state.withLock { s in s.samples[from...].filter { $0.receivedMono == nil }.count } }
        func samples(from: Int) -> [Sample] { state.withLock { Array($0.samples[from...]) } }
    }
}

/// `text` as a JSON string literal.
private func jsonString(_ text: String) -> String { CanonicalJSONWriter.quoted(text) }
