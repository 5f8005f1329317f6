import ArgumentParser
import Foundation

/// The `telematics` command: the ingestion pipeline and its tools.
@main
struct Telematics: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "telematics",
        abstract: "Connected-vehicle telematics ingestion: decode, stream and store vehicle messages.",
        subcommands: [Run.self, Decode.self, Broker.self, Produce.self, Simulate.self, Query.self, Retention.self, Privacy.self, Keys.self, Config.self, BenchAlerts.self]
    )

    /// Parses the command line, with `run`'s settings from a file and the
    /// environment added (``RunSettings``), and runs the command.
    static func main() async {
        var arguments = Array(CommandLine.arguments.dropFirst())
        do {
            if arguments.first == "run" {
                arguments = ["run"] + (try RunSettings.expand(Array(arguments.dropFirst()), environment: ProcessInfo.processInfo.environment))
            }
            var command = try parseAsRoot(arguments)
            if var command = command as? AsyncParsableCommand {
                try await command.run()
            } else {
                try command.run()
            }
        } catch {
            exit(withError: error)
        }
    }
}
