import ArgumentParser

/// The `telematics` command: the ingestion pipeline and its tools.
@main
struct Telematics: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "telematics",
        abstract: "Connected-vehicle telematics ingestion: decode, stream and store vehicle messages.",
        subcommands: [Decode.self]
    )
}
