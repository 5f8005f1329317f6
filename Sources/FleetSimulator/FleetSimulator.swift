import TelematicsWire

/// A fleet of simulated vehicles around Denmark writing WIRE.md envelopes:
/// the traffic mix of a real connected fleet (RTTI probes dominate; rare
/// breakdowns, accidents and HV warn calls), per-vehicle increasing
/// sequence numbers, plausible positions, zstd-compressed bodies.
///
/// Deterministic: the same configuration (seed included) yields the same
/// records byte for byte. Time is simulated (``Configuration/startMs`` plus
/// the record's place in a steady stream at ``Configuration/ratePerSecond``),
/// so pacing against the wall clock is the caller's business.
public struct FleetSimulator {
    /// What to simulate.
    public struct Configuration: Sendable {
        /// Number of vehicles.
        public var vehicles: Int
        /// The seed of every random choice.
        public var seed: UInt64
        /// The simulated time of the first record (ms since the epoch).
        public var startMs: Int64
        /// Records per second of simulated time, fleet-wide.
        public var ratePerSecond: Double
        /// Share of records per kind; need not sum to 1.
        public var mix: Mix
        /// Chance that an HV warn call repeats the vehicle's previous event id
        /// (vehicles resend until acknowledged).
        public var hvRepeatChance: Double = 0.3
        /// The zstd level of bodies.
        public var compressionLevel: Int32 = 3

        /// A fleet of `vehicles` with defaults: seed 1, start 2025-11-24T00:00Z,
        /// 1000 records/s, the default mix.
        public init(vehicles: Int, seed: UInt64 = 1, startMs: Int64 = 1_763_942_400_000, ratePerSecond: Double = 1000, mix: Mix = .default) {
            self.vehicles = vehicles
            self.seed = seed
            self.startMs = startMs
            self.ratePerSecond = ratePerSecond
            self.mix = mix
        }
    }

    /// Relative frequencies of the five kinds.
    public struct Mix: Sendable {
        public var rtti: Double
        public var teleservice: Double
        public var charging: Double
        public var consent: Double
        public var hvWarn: Double
        /// Weights of each kind.
        public init(rtti: Double, teleservice: Double, charging: Double, consent: Double, hvWarn: Double) {
            self.rtti = rtti
            self.teleservice = teleservice
            self.charging = charging
            self.consent = consent
            self.hvWarn = hvWarn
        }
        /// RTTI 70 %, teleservice 12 %, charging 12 %, consent 5 %, HV warn 1 %.
        public static let `default` = Mix(rtti: 70, teleservice: 12, charging: 12, consent: 5, hvWarn: 1)
    }

    /// One generated record: what WIRE.md puts on Kafka.
    public struct Record: Sendable {
        /// The message before encoding.
        public let message: TelematicsMessage
        /// The record value (envelope + compressed body).
        public let value: [UInt8]
        /// The envelope's kind.
        public var kind: MessageKind { message.body.kind }
        /// The record key: the VIN's 17 bytes.
        public var key: [UInt8] { message.vin.withBytes { Array($0) } }
    }

    /// The configuration in use.
    public let configuration: Configuration
    private var random: SplitMix64
    private var vehicles: [Vehicle]
    private let compressor: ZstdCompressor
    private let cumulativeMix: [Double]
    /// Records generated so far.
    public private(set) var generated = 0

    /// A fleet; `dictionary` (raw bytes of a zstd `.dict` file) compresses
    /// bodies with that dictionary, which decoders then need.
    public init(configuration: Configuration, dictionary: [UInt8]? = nil) throws(DictionaryError) {
        precondition(configuration.vehicles > 0, "a fleet needs at least one vehicle")
        self.configuration = configuration
        compressor = try ZstdCompressor(level: configuration.compressionLevel, dictionary: dictionary)
        var random = SplitMix64(seed: configuration.seed)
        vehicles = (0..<configuration.vehicles).map { Vehicle(index: $0, random: &random, startMs: configuration.startMs) }
        self.random = random
        let m = configuration.mix
        var total = 0.0
        cumulativeMix = [m.rtti, m.teleservice, m.charging, m.consent, m.hvWarn].map { total += max(0, $0); return total }
    }

    /// The VINs of the fleet, in vehicle order.
    public var vins: [VIN] { vehicles.map(\.vin) }

    /// The next record of the stream.
    public mutating func next() -> Record {
        let now = configuration.startMs + Int64((Double(generated) * 1000 / max(configuration.ratePerSecond, 1e-6)).rounded(.down))
        generated += 1
        let v = Int(random.next(below: UInt64(vehicles.count)))
        let pick = random.unit() * (cumulativeMix.last ?? 1)
        let kind = cumulativeMix.firstIndex { pick < $0 } ?? 0
        var vehicle = vehicles[v]
        let body: MessageBody
        switch kind {
        case 0: body = .rttiProbe(vehicle.rttiProbe(at: now, random: &random))
        case 1: body = .teleserviceCall(vehicle.teleserviceCall(random: &random))
        case 2: body = .chargeSession(vehicle.chargeSession(endingAt: now, random: &random))
        case 3: body = .consentState(vehicle.consentChange(random: &random))
        default: body = .hvWarnCall(vehicle.hvWarnCall(repeatChance: configuration.hvRepeatChance, random: &random))
        }
        vehicle.sequence += 1
        let message = TelematicsMessage(vin: vehicle.vin, sequence: vehicle.sequence, recordedAtMs: now, body: body)
        vehicles[v] = vehicle
        return Record(message: message, value: EnvelopeWriter.record(message, compressor: compressor))
    }
}

/// A deterministic pseudo-random generator (SplitMix64): fast, and the
/// same on every platform, unlike the system generator.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    private var state: UInt64
    /// A generator seeded with `seed`.
    public init(seed: UInt64) { state = seed }
    /// The next 64 random bits.
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    /// A number in `0 ..< bound` (bound > 0), without modulo bias worth noting.
    mutating func next(below bound: UInt64) -> UInt64 { next().multipliedFullWidth(by: bound).high }
    /// A number in `0 ..< 1`.
    mutating func unit() -> Double { Double(next() >> 11) * 0x1.0p-53 }
    /// True with probability `p`.
    mutating func chance(_ p: Double) -> Bool { unit() < p }
    /// An integer in `range`.
    mutating func int(_ range: ClosedRange<Int>) -> Int {
        range.lowerBound + Int(next(below: UInt64(range.upperBound - range.lowerBound + 1)))
    }
}

/// A token bucket: paces a stream at a steady rate with a bounded burst.
/// Pure arithmetic over a caller-supplied clock (seconds), so it is
/// testable and the caller chooses how to sleep.
public struct TokenBucket: Sendable {
    /// Tokens added per second.
    public let rate: Double
    /// The most tokens that can accumulate (the largest burst).
    public let capacity: Double
    private var tokens: Double
    private var last: Double?

    /// A bucket refilled at `rate` per second holding at most `burst` tokens (starts full).
    public init(rate: Double, burst: Double) {
        self.rate = max(rate, 1e-9)
        capacity = max(burst, 1)
        tokens = capacity
    }

    /// Takes `count` tokens at time `now`; returns how many seconds the
    /// caller must wait before acting (0 when they were available). The
    /// debt is recorded, so waiting that long keeps the average at `rate`.
    public mutating func take(_ count: Double = 1, now: Double) -> Double {
        if let last { tokens = min(capacity, tokens + (now - last) * rate) }
        last = now
        tokens -= count
        return tokens >= 0 ? 0 : -tokens / rate
    }
}
