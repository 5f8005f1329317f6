import Foundation
import TelematicsTestSupport
import Testing

/// `telematics run` configured by a settings file and environment variables.
@Suite("telematics run settings: file, environment, command line", .enabled(if: TelematicsBinary.url != nil, "the telematics binary is not built"))
struct RunSettingsTests {
    private func settings(_ output: TelematicsBinary.Output) -> [String: String] {
        var out: [String: String] = [:]
        for line in output.stdout.split(separator: "\n") {
            let parts = line.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            if parts.count == 2 { out[parts[0]] = parts[1] } else if parts.count == 1 { out[parts[0]] = "" }
        }
        return out
    }

    private func file(_ text: String) throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("telematics-\(UUID().uuidString).conf").path
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    @Test("the command line wins over the environment, which wins over the file; repeatable settings add up; secrets are masked")
    func precedence() throws {
        let path = try file("""
            # a deployment's settings
            brokers = kafka-1:9092,kafka-2:9092
            group = from-file
            batch-size = 500   # per transaction
            agent = carla:s3cret
            agent = dev:t0ken
            escalate-after = "30"
            """)
        defer { try? FileManager.default.removeItem(atPath: path) }
        let output = try TelematicsBinary.run(
            ["run", "--config", path, "--batch-size", "700", "--show-settings"],
            environment: ["TELEMATICS_GROUP": "from-env", "TELEMATICS_KAFKA_PROPERTY": "sasl.password=hunter2;linger.ms=3"])
        #expect(output.status == 0, "\(output.stderr)")
        let s = settings(output)
        #expect(s["brokers"] == "kafka-1:9092,kafka-2:9092", "from the file")
        #expect(s["group"] == "from-env", "the environment wins over the file")
        #expect(s["batch-size"] == "700", "the command line wins over the file")
        #expect(s["escalate-after"] == "30.0")
        #expect(s["agent"] == "carla:***;dev:***", "both agents, tokens masked")
        #expect(s["kafka-property"] == "sasl.password=****;linger.ms=3")
        #expect(!output.stdout.contains("s3cret") && !output.stdout.contains("hunter2"))

        // TELEMATICS_CONFIG names the file too.
        let viaEnvironment = try TelematicsBinary.run(["run", "--show-settings"], environment: ["TELEMATICS_CONFIG": path])
        #expect(settings(viaEnvironment)["group"] == "from-file")
    }

    @Test("a bad settings file is refused with its file and line, before anything starts")
    func badFile() throws {
        for (text, message) in [("brokers = a:1\nbatchsize = 5\n", ":2: unknown setting `batchsize`"),
                                ("group = a\ngroup = b\n", ":2: `group` is set twice"),
                                ("brokers\n", ":1: expected `name = value`")] {
            let path = try file(text)
            defer { try? FileManager.default.removeItem(atPath: path) }
            let output = try TelematicsBinary.run(["run", "--config", path, "--show-settings"])
            #expect(output.status != 0)
            #expect(output.stderr.contains(path + message), "\(output.stderr)")
        }
        let missing = try TelematicsBinary.run(["run", "--config", "/nonexistent/telematics.conf"])
        #expect(missing.status != 0 && missing.stderr.contains("cannot be read"))
    }

    @Test("every option of run can be set by file and environment (the settings list is complete)")
    func everyOptionIsASetting() throws {
        let dump = try TelematicsBinary.run(["run", "--experimental-dump-help"])
        #expect(dump.status == 0)
        let json = try #require(try JSONSerialization.jsonObject(with: Data(dump.stdout.utf8)) as? [String: Any])
        let command = try #require(json["command"] as? [String: Any])
        let arguments = try #require(command["arguments"] as? [[String: Any]])
        let longNames = Set(arguments.compactMap { argument -> String? in
            guard argument["kind"] as? String == "option" else { return nil }
            return (argument["names"] as? [[String: Any]])?.first { $0["kind"] as? String == "long" }?["name"] as? String
        })
        #expect(longNames.contains("brokers") && longNames.contains("agent"))
        let shown = Set(settings(try TelematicsBinary.run(["run", "--show-settings"])).keys)
        #expect(longNames.subtracting(["config"]) == shown)
    }
}
