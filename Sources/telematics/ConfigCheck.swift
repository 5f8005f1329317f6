import ArgumentParser
import CallCentre
import Foundation
import TelematicsKafka
import TelematicsStores

/// `telematics config`: the settings files of `telematics run`.
struct Config: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Settings files of `telematics run`.",
        subcommands: [ConfigCheck.self]
    )
}

/// `telematics config check FILE`: validates a settings file (with the
/// environment that would override it) before a deployment uses it.
struct ConfigCheck: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Validate a YAML settings file of `telematics run` and print the effective configuration, secrets masked.",
        discussion: """
            Checks the YAML syntax, that every key is an option of `run`, the shape of \
            each value (one value, a list, or a mapping of KEY: VALUE), and each value \
            as `run` would read it: numbers are numbers, the console address is \
            HOST:PORT or off, the PostgreSQL URL parses, librdkafka knows every \
            kafka-property and accepts its value, brokers are HOST:PORT. The \
            environment's TELEMATICS_<OPTION> variables override the file, as for `run`, \
            and are checked too. Nothing is connected to and no file the settings name \
            is opened (key files stay unread).
            On success prints the effective configuration as YAML (which `run --config` \
            reads back, once the masked secrets are filled in), each line saying \
            where its value came from: the file and line, the environment variable, or \
            the default. Passwords in the PostgreSQL URL, agent tokens and secret \
            librdkafka properties are masked. Otherwise prints every problem with its \
            file and line or variable and exits 1.
            """
    )

    @Argument(help: ArgumentHelp("The settings file.", valueName: "FILE"))
    var file: String

    func run() throws {
        let effective: [RunSettings.Setting]
        do {
            effective = RunSettings.effective(file: try RunSettings.read(file), environment: ProcessInfo.processInfo.environment)
        } catch let failure as RunSettings.Failure {
            writeStandardError("config check: \(failure)\n")
            throw ExitCode.failure
        }
        let problems = effective.flatMap(Self.problems)
        guard problems.isEmpty else {
            writeStandardError(problems.map { "config check: \($0)\n" }.joined()
                + "config check: \(file): \(problems.count) problem\(problems.count == 1 ? "" : "s")\n")
            throw ExitCode.failure
        }
        // Every setting, the defaults of the ones left unset included.
        let parsed = try Run.parse(RunSettings.arguments(for: effective))
        let defaults = Dictionary(parsed.settings, uniquingKeysWith: { first, _ in first })
        let shown = RunSettings.options.compactMap { option -> RunSettings.Setting? in
            if let setting = effective.first(where: { $0.name == option.name }) { return setting }
            guard let value = defaults[option.name], !value.isEmpty else { return nil }
            return RunSettings.Setting(name: option.name, values: [value], source: .defaultValue)
        }
        print("# telematics run: effective configuration of \(file) and the environment; secrets masked")
        print(RunSettings.yaml(shown))
    }

    /// What is wrong with one setting, each naming where it was set.
    static func problems(_ setting: RunSettings.Setting) -> [String] {
        let name = setting.name
        func problem(_ text: String) -> String { "\(setting.source): `\(name)`: \(text)" }
        // The value as `run` parses it: types, choices.
        do {
            _ = try Run.parse(RunSettings.arguments(for: [setting]))
        } catch {
            let message = Run.message(for: error)
            // A setting of RunSettings.options that this build's `run` does not declare.
            return [problem(message.hasPrefix("Unknown option") ? "this build of `telematics run` has no --\(name)" : message)]
        }
        var problems: [String] = []
        for value in setting.values {
            switch name {
            case "brokers":
                for server in KafkaBootstrap(value).servers where !isHostPort(server) {
                    problems.append(problem("`\(server)` is not HOST:PORT"))
                }
            case "console" where value != "off":
                var console = ConsoleConfiguration()
                do { try console.setAddress(value) } catch { problems.append(problem("\(error) (expected HOST:PORT, :PORT or off)")) }
            case "postgres":
                do { _ = try PostgresStore.checkedURL(value) } catch { problems.append(problem(error.message)) }
            default:
                break
            }
        }
        switch name {
        case "kafka-property":
            let pairs = setting.values.map { value -> (String, String) in
                let parts = value.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
                return (parts[0], parts.count > 1 ? parts[1] : "")
            }
            // One at a time, so each problem names its property.
            for pair in pairs {
                do { try checkKafkaProperties([pair]) } catch { problems.append(problem("\(pair.0): \(error.message)")) }
            }
        case "agent":
            // The console's own parser; its messages are not repeated as they may quote a token.
            if (try? ConsoleConfiguration.agents(fromPairs: setting.values)) == nil {
                problems.append(problem("each agent is NAME:TOKEN (name: token in a mapping), both parts non-empty, each token given once"))
            }
        default:
            break
        }
        return problems
    }

    /// `host:port` with a host and a port from 1 to 65535.
    static func isHostPort(_ server: String) -> Bool {
        guard let colon = server.lastIndex(of: ":"), colon != server.startIndex,
              let port = Int(server[server.index(after: colon)...]) else { return false }
        return (1...65_535).contains(port)
    }
}
