import FleetSimulator
import Foundation
import TelematicsKafka
import TelematicsTestSupport
import TelematicsWire
import Testing

@Suite("telematics broker and produce as processes")
struct CommandTests {
    @Test("`telematics produce` publishes a capture to a `telematics broker` in another process, every record to its kind's topic",
          .enabled(if: TelematicsBinary.url != nil, "the telematics executable is not built next to the tests (swift build first)"))
    func brokerAndProduce() async throws {
        let executable = try #require(TelematicsBinary.url)
        let broker = Process()
        broker.executableURL = executable
        broker.arguments = ["broker", "--brokers", "2", "--partitions", "3"]
        let stdout = Pipe()
        broker.standardOutput = stdout
        broker.standardError = FileHandle.nullDevice
        try broker.start()
        defer {
            broker.terminate()
            broker.waitUntilExit()
        }
        // The first line is the bootstrap list.
        var line = Data()
        while !line.contains(UInt8(ascii: "\n")) {
            let chunk = ProcessOutput.readSome(stdout.fileHandleForReading)
            if chunk.isEmpty { break }
            line.append(chunk)
        }
        let bootstrap = String(decoding: line.prefix { $0 != UInt8(ascii: "\n") }, as: UTF8.self)
        #expect(bootstrap.hasPrefix("127.0.0.1:"))

        // A capture of 500 simulated records.
        let capture = FileManager.default.temporaryDirectory.appendingPathComponent("produce-\(getpid()).tmcap").path
        defer { try? FileManager.default.removeItem(atPath: capture) }
        var fleet = try FleetSimulator(configuration: .init(vehicles: 20, seed: 99))
        let writer = try CaptureWriter(path: capture)
        var expected: [MessageKind: Int] = [:]
        for _ in 0..<500 {
            let r = fleet.next()
            expected[r.kind, default: 0] += 1
            try writer.append(r.value)
        }
        try writer.close()

        let produce = Process()
        produce.executableURL = executable
        produce.arguments = ["produce", "--brokers", bootstrap, capture]
        produce.standardError = FileHandle.nullDevice
        try produce.start()
        produce.waitUntilExit()
        #expect(produce.terminationStatus == 0)

        // Read every topic back: the counts per kind match, and each key is the VIN in the value.
        for kind in MessageKind.allCases {
            var config = KafkaConsumerConfiguration(bootstrap: KafkaBootstrap(bootstrap), groupID: "check-\(kind.rawValue)")
            config.sessionTimeoutMs = 6_000
            config.properties["heartbeat.interval.ms"] = "500"
            let consumer = try KafkaConsumer(configuration: config)
            let watermarks = try await (0..<3).asyncMap { try await consumer.watermarks(KafkaTopicPartition(topic: kind.defaultTopic, partition: Int32($0))) }
            #expect(watermarks.map { Int($0.high - $0.low) }.reduce(0, +) == expected[kind, default: 0], "\(kind.defaultTopic)")
            await consumer.close()
        }
    }
}

extension Sequence {
    func asyncMap<T>(_ transform: (Element) async throws -> T) async rethrows -> [T] {
        var out: [T] = []
        for e in self { out.append(try await transform(e)) }
        return out
    }
}
