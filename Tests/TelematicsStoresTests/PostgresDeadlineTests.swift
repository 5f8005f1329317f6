@testable import TelematicsStores
import Logging
import PostgresNIO
import TelematicsTestSupport
import Testing

/// A statement PostgreSQL does not answer must not hold a store forever.
@Suite("PostgreSQL: statement deadline")
struct PostgresDeadlineTests {
    @Test("a statement unanswered within its deadline fails at the deadline, closing the connection; a new connection works; one whose connection the server ends fails at once")
    func unansweredStatement() async throws {
        let url = try await TestPostgres.url()
        let (configuration, _) = try PostgresStore.parse(url)
        let logger = Logger(label: "test.deadline")
        let connection = try await PostgresConnection.connect(configuration: configuration, id: 1, logger: logger)
        // pg_sleep stands for an answer that never comes.
        let started = ContinuousClock.now
        await #expect(throws: PostgresStatementTimedOut.self) {
            _ = try await connection.checkedQuery(PostgresQuery(unsafeSQL: "SELECT pg_sleep(30)"), logger: logger, deadline: .seconds(1))
        }
        let waited = ContinuousClock.now - started
        #expect(waited < .seconds(10), "failed after \(waited), not after the 30 s the statement would take")
        // The connection is closed at the deadline: further statements fail at once.
        let closeBy = ContinuousClock.now + .seconds(5)
        while !connection.isClosed, ContinuousClock.now < closeBy { try await Task.sleep(for: .milliseconds(50)) }
        #expect(connection.isClosed)
        await #expect(throws: PostgresStoreConnectionClosed.self) {
            _ = try await connection.checkedQuery(PostgresQuery(unsafeSQL: "SELECT 1"), logger: logger)
        }
        // A statement answered in time passes through, rows and all.
        let fresh = try await PostgresConnection.connect(configuration: configuration, id: 2, logger: logger)
        var values: [Int] = []
        for try await value in try await fresh.checkedQuery(PostgresQuery(unsafeSQL: "SELECT generate_series(1, 3)"), logger: logger,
                                                             deadline: .seconds(5)).decode(Int.self) {
            values.append(value)
        }
        #expect(values == [1, 2, 3])

        // The server ends a connection while its statement runs (as a
        // shutdown does): the statement fails at once, not at the deadline.
        var pid: Int32 = 0
        for try await value in try await fresh.checkedQuery(PostgresQuery(unsafeSQL: "SELECT pg_backend_pid()"), logger: logger).decode(Int32.self) {
            pid = value
        }
        let ending = Task {
            try await Task.sleep(for: .milliseconds(500))
            let other = try await PostgresConnection.connect(configuration: configuration, id: 3, logger: logger)
            _ = try await other.query(PostgresQuery(unsafeSQL: "SELECT pg_terminate_backend(\(pid))"), logger: logger)
            try await other.close()
        }
        let sent = ContinuousClock.now
        await #expect(throws: (any Error).self) {
            for try await _ in try await fresh.checkedQuery(PostgresQuery(unsafeSQL: "SELECT pg_sleep(30)"), logger: logger, deadline: .seconds(60)) {}
        }
        #expect(ContinuousClock.now - sent < .seconds(10), "failed when the server ended the connection, not at the deadline")
        try await ending.value
        try? await fresh.close()
        await TestPostgres.dropDatabase(url: url)
    }
}
