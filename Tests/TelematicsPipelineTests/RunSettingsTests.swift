import Foundation
import TelematicsTestSupport
import Testing
import Yams

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
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("telematics-\(UUID().uuidString).yaml").path
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    @Test("the command line wins over the environment, which wins over the file; repeatable settings add up; secrets are masked")
    func precedence() throws {
        let path = try file("""
            # a deployment's settings
            brokers: [kafka-1:9092, kafka-2:9092]
            group: from-file
            batch-size: 500   # per transaction
            agent:
              carla: s3cret
              dev: t0ken
            escalate-after: "30"
            kafka-property:
              security.protocol: SASL_SSL
              sasl.password: from-file-pw
            """)
        defer { try? FileManager.default.removeItem(atPath: path) }
        let output = try TelematicsBinary.run(
            ["run", "--config", path, "--batch-size", "700", "--show-settings"],
            environment: ["TELEMATICS_GROUP": "from-env", "TELEMATICS_KAFKA_PROPERTY": "sasl.password=hunter2;linger.ms=3"])
        #expect(output.status == 0, "\(output.stderr)")
        let s = settings(output)
        #expect(s["brokers"] == "kafka-1:9092,kafka-2:9092", "from the file, a list joined")
        #expect(s["group"] == "from-env", "the environment wins over the file")
        #expect(s["batch-size"] == "700", "the command line wins over the file")
        #expect(s["escalate-after"] == "30.0")
        #expect(s["agent"] == "carla:***;dev:***", "both agents, tokens masked")
        // Pairs add up, the environment's winning for a key both set.
        #expect(s["kafka-property"] == "security.protocol=SASL_SSL;sasl.password=****;linger.ms=3")
        #expect(!output.stdout.contains("s3cret") && !output.stdout.contains("hunter2") && !output.stdout.contains("from-file-pw"))

        // TELEMATICS_CONFIG names the file too.
        let viaEnvironment = try TelematicsBinary.run(["run", "--show-settings"], environment: ["TELEMATICS_CONFIG": path])
        #expect(settings(viaEnvironment)["group"] == "from-file")
    }

    @Test("a bad settings file is refused with its file and line, before anything starts")
    func badFile() throws {
        for (text, message) in [("brokers: a:1\nbatchsize: 5\n", ":2: unknown setting `batchsize`"),
                                ("group: a\ngroup: b\n", ": not valid YAML"),
                                ("group: [a, b]\n", ":1: `group`: expected a value, got a list"),
                                ("console:\n", ":1: `console`: has no value"),
                                ("kafka-property: [linger.ms]\n", ":1: `kafka-property`: expected KEY=VALUE, got `linger.ms`"),
                                ("- brokers\n", ":1: expected a mapping of settings"),
                                ("brokers: [a\n", ": not valid YAML")] {
            let path = try file(text)
            defer { try? FileManager.default.removeItem(atPath: path) }
            let output = try TelematicsBinary.run(["run", "--config", path, "--show-settings"])
            #expect(output.status != 0)
            #expect(output.stderr.contains(path + message), "\(text): \(output.stderr)")
        }
        let missing = try TelematicsBinary.run(["run", "--config", "/nonexistent/telematics.yaml"])
        #expect(missing.status != 0 && missing.stderr.contains("cannot be read"))
    }

    @Test("config check prints the effective configuration as YAML, each value's source named, secrets masked")
    func configCheck() throws {
        let path = try file("""
            brokers: kafka-1:9092
            postgres: postgres://telematics:pg-s3cret@db:5432/telematics?sslmode=disable
            kafka-property:
              security.protocol: SASL_SSL
              sasl.username: telematics
              sasl.password: sasl-s3cret
              ssl.key.password: key-s3cret
              sasl.oauthbearer.config: principal=telematics secret=oauth-s3cret
              ssl.ca.location: /etc/ssl/ca.pem
            agent: ["carla:agent-s3cret"]
            batch-size: 1500
            """)
        defer { try? FileManager.default.removeItem(atPath: path) }
        let output = try TelematicsBinary.run(["config", "check", path], environment: ["TELEMATICS_GROUP": "from-env", "TELEMATICS_ESCALATE_AFTER": "45"])
        #expect(output.status == 0, "\(output.stderr)")
        for secret in ["pg-s3cret", "sasl-s3cret", "key-s3cret", "oauth-s3cret", "agent-s3cret"] {
            #expect(!output.stdout.contains(secret), "\(secret) is masked")
        }
        let yaml = try #require(try Yams.load(yaml: output.stdout) as? [String: Any], "\(output.stdout)")
        #expect(yaml["brokers"] as? String == "kafka-1:9092")
        #expect(yaml["group"] as? String == "from-env")
        #expect(yaml["escalate-after"] as? Int == 45)
        #expect(yaml["batch-size"] as? Int == 1500)
        #expect(yaml["postgres"] as? String == "postgres://telematics:***@db:5432/telematics?sslmode=disable")
        let properties = try #require(yaml["kafka-property"] as? [String: Any])
        #expect(properties["sasl.username"] as? String == "telematics" && properties["ssl.ca.location"] as? String == "/etc/ssl/ca.pem")
        #expect(properties["sasl.password"] as? String == "****" && properties["ssl.key.password"] as? String == "****")
        #expect((yaml["agent"] as? [String: Any])?["carla"] as? String == "***")
        #expect(yaml["log-level"] as? String == "info", "defaults are shown too")
        // Each line says where its value came from.
        let lines = output.stdout.split(separator: "\n")
        #expect(lines.contains { $0.hasPrefix("group: from-env") && $0.hasSuffix("# environment TELEMATICS_GROUP") })
        #expect(lines.contains { $0.hasPrefix("batch-size: 1500") && $0.hasSuffix("# \(path):11") })
        #expect(lines.contains { $0.hasPrefix("log-level: info") && $0.hasSuffix("# default") })
    }

    @Test("config check refuses wrong values with where each was set, and exits 1")
    func configCheckRefuses() throws {
        let path = try file("""
            brokers: kafka-1:9092,kafka-2
            batch-size: many
            console: 0.0.0.0:99999
            postgres: mysql://db/telematics
            kafka-property:
              sasl.mechanisms: SCRAM-SHA-512
              no.such.property: 1
              session.timeout.ms: soon
            compression: brotli
            agent: ["carla:"]
            """)
        defer { try? FileManager.default.removeItem(atPath: path) }
        let output = try TelematicsBinary.run(["config", "check", path], environment: ["TELEMATICS_EXIT_WHEN_IDLE": "later"])
        #expect(output.status == 1)
        #expect(output.stdout.isEmpty)
        for expected in ["\(path):1: `brokers`: `kafka-2` is not HOST:PORT",
                         "\(path):2: `batch-size`:", "\(path):3: `console`:", "\(path):4: `postgres`: bad URL",
                         "\(path):5: `kafka-property`: no.such.property", "\(path):5: `kafka-property`: session.timeout.ms",
                         "\(path):9: `compression`:", "\(path):10: `agent`:",
                         "environment TELEMATICS_EXIT_WHEN_IDLE: `exit-when-idle`:", "9 problems"] {
            #expect(output.stderr.contains(expected), "\(expected) in \(output.stderr)")
        }
        #expect(!output.stderr.contains("sasl.mechanisms"), "a good property is not a problem")

        let unknown = try file("brokers: a:1\nbatchsize: 5\n")
        defer { try? FileManager.default.removeItem(atPath: unknown) }
        let refused = try TelematicsBinary.run(["config", "check", unknown])
        #expect(refused.status == 1 && refused.stderr.contains("\(unknown):2: unknown setting `batchsize`"), "\(refused.stderr)")
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
