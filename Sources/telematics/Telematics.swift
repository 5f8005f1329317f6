import ArgumentParser

/// The `telematics` command: the ingestion pipeline and its tools.
@main
struct Telematics: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "telematics",
        abstract: "Connected-vehicle telematics ingestion: decode, stream and store vehicle messages.",
        subcommands: [Run.self, Decode.self, Broker.self, Produce.self, Simulate.self, Query.self]
    )
}
