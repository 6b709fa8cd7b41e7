/*
 * loadgen-k8s load engine: one JVM is one worker (a producer or the consumer) of one load test.
 *
 * Run without a build step, as a JDK 17 single-file source program on the Pulsar distribution's
 * classpath (Pulsar Java client, HdrHistogram, Avro, Jackson):
 *
 *   java -Xms<heap> -Xmx<heap> -XX:+UseParallelGC -cp '/pulsar/lib/*' LoadWorker.java <worker>.properties
 *
 * The properties file (rendered by the charm from templates/worker.properties.j2) names the role,
 * topic, rate, payload, batching, where to write and, with TLS, the CA file the brokers are
 * verified with (tls.trust.certs.file: their names are checked, insecure connections refused; the
 * client reloads the file when the charm replaces it). The engine writes, in output.dir, atomically
 * (temporary file, then rename): <worker>.progress.json every progress.seconds, <worker>.hlog (an
 * HdrHistogram interval log, one interval per interval.seconds, measured phase only) and
 * <worker>.result.json once at the end, with state finished, stopped (SIGTERM: the shutdown hook
 * stops sending, waits up to 10 s for pending acknowledgements and writes what was measured) or
 * failed (one-line error, exit code 1). stdout gets a one-line summary every 10 s.
 *
 * Measurement follows the OpenMessaging Benchmark:
 * - Message i of a rate segment has the intended send time t0 + i/rate (System.nanoTime). The
 *   sender parks until that time (it spins only for the last 20 us; a parked thread wakes some
 *   50 us late on Linux, which is then recorded, honestly, as publish delay). A sender that falls
 *   behind never re-bases its schedule: it sends the overdue messages at once and the publish delay
 *   (actual send minus intended send, us) grows, so coordinated omission shows instead of hiding.
 * - Publish latency: acknowledgement minus actual send (us). End to end (consumer): receive wall
 *   clock minus the message's publish time (ms; only meaningful when the pods' clocks agree).
 * - HdrHistogram Recorders, 5 significant digits, highest 60 s (us) and 12 h (ms); larger values
 *   are clamped to the highest (the clamped count is reported). A message belongs to the measured
 *   phase when it is actually sent within it: a sender that cannot keep up sends fewer messages in
 *   the phase (the achieved rate shows it) and each carries its whole delay behind schedule,
 *   warm-up's included (the publish delay shows it). Counting by intended time instead would
 *   measure nothing at all when the target is far above what the cluster takes (every message
 *   due in the phase would be sent after it).
 *
 * Payloads: "bytes" sends one random array of `size` bytes for every message (as pulsar-perf does;
 * it compresses far better than real data), with Schema.BYTES. "iot-avro" and "iot-json" send a
 * sensor reading (class SensorReading below) per message, values varied by a xorshift generator,
 * encoded once per message by a hand-written encoder (the per-device strings are pre-encoded) and
 * checked at start-up to be byte-identical to Schema.AVRO(SensorReading.class)'s encoding (AVRO) or
 * to decode with Schema.JSON(SensorReading.class) to the same reading (JSON). The producer's
 * schema is a pass-through Schema<byte[]> that carries the AVRO (or JSON) SchemaInfo, so the
 * broker registers the real schema on the topic and any AVRO/JSON consumer decodes the messages;
 * Schema.AUTO_PRODUCE_BYTES(Schema.AVRO(...)) would do the same but decodes every message to
 * validate it, a cost we check once instead. The encoded size is the real byte count sent.
 *
 * Memory is bounded by: the client's memory limit (memory.limit.mb: payload bytes of messages
 * not yet acknowledged, across partitions; a send blocks when it is reached), max.pending (a
 * bound on queued messages per partition producer, blockIfQueueFull, so the sender blocks rather
 * than queueing without end), the histograms (about 10.5 MB each at 5 digits over 60 s in us or
 * 12 h in ms; a producer keeps six (about 64 MB), the consumer three (about 32 MB), plus a small
 * one for max search), the device table (about 200 B per device in the worker's slice) and the
 * encoded intervals kept for the result (a few KB per interval). A producer heap of 256 MB is
 * ample; Netty's direct memory holds the in-flight batches (bounded by the memory limit).
 *
 * Bytes on the wire: the client's ProducerStats count a batch's uncompressed size, so the engine
 * estimates bytes_compressed instead: it compresses representative batches of this worker's own
 * keys and payloads (batch size from rate, batching settings and partition count) with the
 * client's codec, and applies that ratio to the payload bytes acknowledged
 * (bytes_compressed_estimated: true in the result).
 *
 * max.search=true (producer): find the highest rate this worker sustains. OMB's controller moves
 * in small steps from 10k msg/s and judges by a backlog bound, so it settles far below the real
 * maximum; here the rate doubles from `rate` while each window is sustained, then bisects between
 * the highest sustained and lowest unsustained target until they are within 2 %, then confirms
 * the lower bound over a longer window (when that fails: stepping down 3 % at a time until a
 * window is sustained, then bisecting again).
 * Each window starts a fresh schedule, lets 0.5 s settle and is then judged over 3 s (10 s when
 * confirming). Sustained means: acknowledged rate >= 97 % of target, the sender's lag behind its
 * schedule grew by less than 1.5 % of the window (0.5 % when confirming; a 2 % shortfall shows as
 * steadily growing lag, which a p99 bound alone misses), publish delay p99 <= 100 ms, pending
 * messages <= max(1000, half a second of target) and no failed send. At most 30 windows and 150 s
 * of searching. The found rate is then held for duration.seconds: that hold is the measured phase
 * (histograms, intervals), and the result's max_search gives found_rate, stability_cv (coefficient
 * of variation of the per-second acknowledged rate during the hold), held (the hold met the same
 * criteria: >= 97 % of target, delay p99 <= 100 ms, no failures) and every step. The consumer runs
 * until the producers stop (no message for 5 s after warmup + duration), so its end-to-end
 * histogram covers the search as well as the hold.
 *
 * The consumer subscribes (Shared, from the earliest position, before the producers start) with
 * Schema.BYTES: it decodes nothing, and a BYTES consumer is accepted on a topic with an AVRO or
 * JSON schema. It acknowledges asynchronously (the client groups acknowledgements). Its warm-up
 * starts at the publish time of the first message, and a message is measured when it was
 * published after the warm-up, so it measures what the producers measure even when the JVMs start
 * seconds apart. Messages published well before it subscribed (left on the topic by an earlier
 * test) are skipped and counted (stale_skipped).
 */

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import io.netty.buffer.ByteBuf;
import io.netty.buffer.Unpooled;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.PrintStream;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Base64;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Properties;
import java.util.SplittableRandom;
import java.util.TreeMap;
import java.util.concurrent.CompletionException;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.LongAdder;
import java.util.concurrent.locks.LockSupport;
import java.util.function.BiConsumer;
import java.util.function.Supplier;
import org.HdrHistogram.Histogram;
import org.HdrHistogram.HistogramLogWriter;
import org.HdrHistogram.Recorder;
import org.HdrHistogram.SingleWriterRecorder;
import org.apache.pulsar.client.api.AuthenticationFactory;
import org.apache.pulsar.client.api.ClientBuilder;
import org.apache.pulsar.client.api.CompressionType;
import org.apache.pulsar.client.api.Consumer;
import org.apache.pulsar.client.api.Message;
import org.apache.pulsar.client.api.MessageId;
import org.apache.pulsar.client.api.Producer;
import org.apache.pulsar.client.api.ProducerBuilder;
import org.apache.pulsar.client.api.PulsarClient;
import org.apache.pulsar.client.api.Schema;
import org.apache.pulsar.client.api.SizeUnit;
import org.apache.pulsar.client.api.SubscriptionInitialPosition;
import org.apache.pulsar.client.api.SubscriptionType;
import org.apache.pulsar.client.api.TypedMessageBuilder;
import org.apache.pulsar.common.compression.CompressionCodec;
import org.apache.pulsar.common.compression.CompressionCodecProvider;
import org.apache.pulsar.common.schema.SchemaInfo;

public final class LoadWorker {
    static final int DIGITS = 5;
    static final long PUBLISH_HIGHEST_US = 60_000_000L;
    static final long E2E_HIGHEST_MS = 12L * 3600 * 1000;
    static final long SPIN_NS = 20_000;
    static final long SUMMARY_NS = 10_000_000_000L;
    static final double STOP_ACK_WAIT_S = 10.0;
    static final double END_ACK_WAIT_S = 35.0; // beyond the client's 30 s send time-out
    static final double CONSUMER_IDLE_S = 5.0;
    static final double CONSUMER_MAX_DRAIN_S = 60.0;
    // Max search (see the header comment).
    static final double SEARCH_SETTLE_S = 0.5;
    static final double SEARCH_WINDOW_S = 3.0;
    static final double CONFIRM_WINDOW_S = 10.0;
    static final int SEARCH_MAX_WINDOWS = 30;
    static final double SEARCH_MAX_S = 150.0;
    static final double SEARCH_PRECISION = 1.02;
    static final double SUSTAIN_ACK_RATIO = 0.97;
    static final double SUSTAIN_DELAY_P99_US = 100_000;
    static final double CONFIRM_BACKOFF = 0.97;
    static final String WORKER_DONE_NOTICE = "pulsar.apache.org/loadgen-worker-done";

    public static void main(String[] args) {
        quietLogging();
        if (args.length != 1) {
            System.err.println("usage: java -cp '/pulsar/lib/*' LoadWorker.java <worker>.properties");
            System.exit(2);
        }
        Config config;
        try {
            config = Config.load(Path.of(args[0]));
        } catch (Exception e) {
            System.err.println("loadgen: bad worker properties " + args[0] + ": " + oneLine(e));
            Config.writeEarlyFailure(Path.of(args[0]), oneLine(e));
            System.exit(1);
            return;
        }
        LoadWorker worker = new LoadWorker(config);
        System.exit(worker.run());
    }

    static java.util.logging.Logger otelLogger; // held: java.util.logging keeps loggers weakly

    /** The client's info lines (connections, subscriptions) are noise in Pebble's log: keep warnings and errors. */
    static void quietLogging() {
        try {
            // The context of the client's class loader (this source file has its own loader, and
            // log4j keeps a context per loader).
            var context = (org.apache.logging.log4j.core.LoggerContext) org.apache.logging.log4j.LogManager
                    .getContext(PulsarClient.class.getClassLoader(), false);
            context.getConfiguration().getRootLogger().setLevel(org.apache.logging.log4j.Level.WARN);
            context.updateLoggers();
        } catch (Throwable ignored) {
            // Another logging backend: its defaults apply.
        }
        otelLogger = java.util.logging.Logger.getLogger("io.opentelemetry");
        otelLogger.setLevel(java.util.logging.Level.WARNING);
    }

    // ------------------------------------------------------------------ configuration

    static final class Config {
        String role;
        String testId;
        String unit;
        String worker;
        String serviceUrl;
        String tokenFile;
        String tlsTrustCertsFile; // "" in plaintext
        String topic;
        String subscription;
        double rate;
        boolean maxSearch;
        int warmupSeconds;
        int durationSeconds;
        String payload;
        int size;
        long deviceFirst;
        int deviceCount;
        long deviceTotal;
        boolean keys;
        int batchDelayMs;
        int batchMaxMessages;
        int batchMaxBytes;
        CompressionType compression;
        int maxPending;
        int memoryLimitMb;
        int ioThreads;
        int intervalSeconds;
        int progressSeconds;
        Path outputDir;

        boolean producer() {
            return role.equals("producer");
        }

        static Properties read(Path path) throws IOException {
            Properties p = new Properties();
            try (var in = Files.newBufferedReader(path, StandardCharsets.UTF_8)) {
                p.load(in);
            }
            return p;
        }

        static Config load(Path path) throws IOException {
            Properties p = read(path);
            Config c = new Config();
            c.role = choice(p, "role", "producer", "consumer");
            c.testId = text(p, "test.id");
            c.unit = text(p, "unit");
            c.worker = text(p, "worker");
            c.serviceUrl = text(p, "service.url");
            c.tokenFile = text(p, "auth.token.file");
            c.tlsTrustCertsFile = p.getProperty("tls.trust.certs.file", "").trim();
            if (!c.tlsTrustCertsFile.isEmpty() && !Files.isReadable(Path.of(c.tlsTrustCertsFile))) {
                throw new IOException("tls.trust.certs.file " + c.tlsTrustCertsFile + " is not readable");
            }
            c.topic = text(p, "topic");
            c.subscription = c.role.equals("consumer") ? text(p, "subscription") : p.getProperty("subscription", "");
            c.maxSearch = bool(p, "max.search");
            c.rate = number(p, "rate", 1e-3, 1e9);
            c.warmupSeconds = (int) integer(p, "warmup.seconds", 0, 86_400);
            c.durationSeconds = (int) integer(p, "duration.seconds", 1, 7 * 86_400);
            c.payload = choice(p, "payload", "iot-avro", "iot-json", "bytes");
            c.size = (int) integer(p, "size", 1, 5 * 1024 * 1024);
            c.deviceTotal = integer(p, "device.total", 1, 1_000_000_000);
            c.deviceFirst = integer(p, "device.first", 0, c.deviceTotal - 1);
            c.deviceCount = (int) integer(p, "device.count", 1, Math.min(10_000_000, c.deviceTotal - c.deviceFirst));
            c.keys = bool(p, "keys");
            c.batchDelayMs = (int) integer(p, "batch.delay.ms", 0, 60_000);
            c.batchMaxMessages = (int) integer(p, "batch.max.messages", 1, 1_000_000);
            c.batchMaxBytes = (int) integer(p, "batch.max.bytes", 1, 64 * 1024 * 1024);
            c.compression = CompressionType.valueOf(choice(p, "compression", "LZ4", "NONE", "ZLIB", "ZSTD", "SNAPPY"));
            c.maxPending = (int) integer(p, "max.pending", 1, 10_000_000);
            c.memoryLimitMb = (int) integer(p, "memory.limit.mb", 0, 1_000_000);
            c.ioThreads = (int) integer(p, "io.threads", 1, 64);
            c.intervalSeconds = (int) integer(p, "interval.seconds", 1, 3600);
            c.progressSeconds = (int) integer(p, "progress.seconds", 1, 3600);
            c.outputDir = Path.of(text(p, "output.dir"));
            if (!Files.isDirectory(c.outputDir)) {
                throw new IOException("output.dir " + c.outputDir + " is not a directory");
            }
            return c;
        }

        /** A failed result for a properties file that did not parse, when it names enough to place one. */
        static void writeEarlyFailure(Path path, String error) {
            try {
                Properties p = read(path);
                String dir = p.getProperty("output.dir", "").trim();
                String worker = p.getProperty("worker", "").trim();
                if (dir.isEmpty() || worker.isEmpty() || !Files.isDirectory(Path.of(dir))) {
                    return;
                }
                Map<String, Object> r = new LinkedHashMap<>();
                r.put("unit", p.getProperty("unit", "").trim());
                r.put("worker", worker);
                r.put("test_id", p.getProperty("test.id", "").trim());
                r.put("state", "failed");
                r.put("error", error);
                writeJson(Path.of(dir).resolve(worker + ".result.json"), r);
            } catch (IOException | RuntimeException ignored) {
                // Nothing more to do: the error is on stderr already.
            }
        }

        static String text(Properties p, String key) {
            String v = p.getProperty(key);
            if (v == null || v.trim().isEmpty()) {
                throw new IllegalArgumentException(key + " is missing");
            }
            return v.trim();
        }

        static String choice(Properties p, String key, String... allowed) {
            String v = text(p, key);
            for (String a : allowed) {
                if (a.equals(v)) {
                    return v;
                }
            }
            throw new IllegalArgumentException(key + "=" + v + " is not one of " + Arrays.toString(allowed));
        }

        static boolean bool(Properties p, String key) {
            return Boolean.parseBoolean(choice(p, key, "true", "false"));
        }

        static long integer(Properties p, String key, long min, long max) {
            String v = text(p, key);
            long n;
            try {
                n = Long.parseLong(v);
            } catch (NumberFormatException e) {
                throw new IllegalArgumentException(key + "=" + v + " is not an integer");
            }
            if (n < min || n > max) {
                throw new IllegalArgumentException(key + "=" + v + " is outside " + min + ".." + max);
            }
            return n;
        }

        static double number(Properties p, String key, double min, double max) {
            String v = text(p, key);
            double n;
            try {
                n = Double.parseDouble(v);
            } catch (NumberFormatException e) {
                throw new IllegalArgumentException(key + "=" + v + " is not a number");
            }
            if (!(n >= min && n <= max)) {
                throw new IllegalArgumentException(key + "=" + v + " is outside " + min + ".." + max);
            }
            return n;
        }
    }

    // ------------------------------------------------------------------ latency families

    /** One latency family: its interval recorder, the measured total and the values clamped to its range. */
    static final class Family {
        final String tag;
        final long highest;
        final Recorder multi; // written by client threads (acknowledgements, the listener)
        final SingleWriterRecorder single; // written by the sender thread only: cheaper
        final Histogram total;
        final AtomicLong clamped = new AtomicLong();
        Histogram recycle;

        Family(String tag, long highest, boolean singleWriter) {
            this.tag = tag;
            this.highest = highest;
            this.multi = singleWriter ? null : new Recorder(1, highest, DIGITS);
            this.single = singleWriter ? new SingleWriterRecorder(1, highest, DIGITS) : null;
            this.total = new Histogram(1, highest, DIGITS);
        }

        void record(long value) {
            if (value > highest) {
                clamped.incrementAndGet();
                value = highest;
            } else if (value < 0) {
                value = 0; // clock skew (end to end): counted as 0 rather than dropped
            }
            if (single != null) {
                single.recordValue(value);
            } else {
                multi.recordValue(value);
            }
        }

        /** The histogram recorded since the previous call; it is reused by the next call. */
        Histogram interval() {
            recycle = single != null ? single.getIntervalHistogram(recycle) : multi.getIntervalHistogram(recycle);
            return recycle;
        }
    }

    static String encode(Histogram h) {
        if (h == null || h.getTotalCount() == 0) {
            return "";
        }
        ByteBuffer buffer = ByteBuffer.allocate(h.getNeededByteBufferCapacity());
        int length = h.encodeIntoCompressedByteBuffer(buffer);
        return Base64.getEncoder().encodeToString(Arrays.copyOf(buffer.array(), length));
    }

    // ------------------------------------------------------------------ state

    final Config cfg;
    final ObjectMapper json = new ObjectMapper();
    final long startNs = System.nanoTime();
    final long startMs = System.currentTimeMillis();
    volatile String state = "starting";
    volatile boolean stopping; // SIGTERM received
    volatile boolean stopSending;
    volatile Throwable fatal; // from a worker thread
    final AtomicBoolean finishing = new AtomicBoolean();
    final CountDownLatch finished = new CountDownLatch(1);
    final Object lock = new Object(); // intervals, hlog, progress and result writing

    PulsarClient client;
    Producer<byte[]> producer;
    Consumer<byte[]> consumer;
    Thread sender;
    String schemaName = "BYTES";
    Readings readings;
    String[] keys;

    // Counters over the whole run (progress, search) and for the measured phase (results).
    final AtomicLong sentAll = new AtomicLong(); // sender thread only (lazySet)
    final LongAdder ackedAll = new LongAdder();
    final LongAdder failedAll = new LongAdder();
    final LongAdder receivedAll = new LongAdder();
    final AtomicLong sent = new AtomicLong(); // measured; sender thread only (lazySet)
    final LongAdder acked = new LongAdder();
    final LongAdder failed = new LongAdder();
    final LongAdder received = new LongAdder();
    final LongAdder bytesAcked = new LongAdder();
    final LongAdder bytesReceived = new LongAdder();
    final ConcurrentHashMap<String, LongAdder> failures = new ConcurrentHashMap<>(); // measured
    final ConcurrentHashMap<String, LongAdder> errors = new ConcurrentHashMap<>(); // whole run

    Family publishLatency;
    Family publishDelay;
    Family endToEnd;
    SingleWriterRecorder searchDelay; // publish delay outside the measured phase (max search windows)
    Histogram searchRecycle;

    // Measured phase, nanoTime; Long.MAX_VALUE until known.
    volatile long measureStartNs = Long.MAX_VALUE;
    volatile long measureEndNs = Long.MAX_VALUE;
    volatile double targetRate;
    long lastIntervalNs;
    long intervalSent;
    long intervalAcked;
    long intervalReceived;
    long intervalFailed;
    final List<Map<String, Object>> intervals = new ArrayList<>();
    ByteArrayOutputStream hlogBytes;
    HistogramLogWriter hlog;
    // Progress and the per-second samples.
    long lastProgressNs;
    long lastProgressCount;
    double currentRate;
    long lastSecondCount;
    long lastChangeNs = System.nanoTime(); // when the received count last moved (consumer idleness)
    final List<Double> holdSeconds = new ArrayList<>(); // acknowledged per second during a max-search hold
    volatile boolean holding;
    Map<String, Object> maxSearch; // result's max_search

    LoadWorker(Config cfg) {
        this.cfg = cfg;
        this.targetRate = cfg.producer() ? cfg.rate : 0;
        json.disable(SerializationFeature.FAIL_ON_EMPTY_BEANS);
    }

    Path file(String suffix) {
        return cfg.outputDir.resolve(cfg.worker + suffix);
    }

    void log(String line) {
        System.out.println("[" + cfg.worker + "] " + line);
        System.out.flush();
    }

    // ------------------------------------------------------------------ run

    @SuppressWarnings("deprecation") // statsInterval: its replacement (OpenTelemetry) is not what we need
    int run() {
        Runtime.getRuntime().addShutdownHook(new Thread(this::onSigterm, "loadgen-stop"));
        Thread ticker = new Thread(this::tick, "loadgen-ticker");
        ticker.setDaemon(true);
        try {
            if (cfg.producer()) {
                publishLatency = new Family("publish_latency", PUBLISH_HIGHEST_US, false);
                publishDelay = new Family("publish_delay", PUBLISH_HIGHEST_US, true);
            } else {
                endToEnd = new Family("end_to_end", E2E_HIGHEST_MS, false);
            }
            ticker.start();
            ClientBuilder builder = PulsarClient.builder()
                    .serviceUrl(cfg.serviceUrl)
                    .authentication(AuthenticationFactory.token(tokenSupplier(Path.of(cfg.tokenFile))))
                    .ioThreads(cfg.ioThreads)
                    .listenerThreads(1)
                    .memoryLimit(cfg.memoryLimitMb, SizeUnit.MEGA_BYTES)
                    .statsInterval(0, TimeUnit.SECONDS); // ProducerStats cost a lock per acknowledgement
            if (!cfg.tlsTrustCertsFile.isEmpty()) {
                // Trust the cluster's CA only, and check that each broker's certificate names the host dialled.
                builder.tlsTrustCertsFilePath(cfg.tlsTrustCertsFile)
                        .enableTlsHostnameVerification(true)
                        .allowTlsInsecureConnection(false);
            }
            client = builder.build();
            if (cfg.producer()) {
                runProducer();
            } else {
                runConsumer();
            }
            if (stopping) {
                awaitQuietly(); // the shutdown hook writes the result
                return 143;
            }
            finish("finished", "");
            closeClient();
            return 0;
        } catch (Throwable t) {
            if (stopping) {
                awaitQuietly();
                return 143;
            }
            String error = oneLine(t);
            System.err.println("[" + cfg.worker + "] failed: " + error);
            finish("failed", error);
            closeClient();
            return 1;
        }
    }

    void awaitQuietly() {
        try {
            finished.await(30, TimeUnit.SECONDS);
        } catch (InterruptedException ignored) {
            Thread.currentThread().interrupt();
        }
    }

    /**
     * Tell Pebble this worker is done (a custom notice, which Juju turns into a
     * pebble-custom-notice event), so the charm collects the result at once instead of at the next
     * update-status. Pebble gives its services PEBBLE_SOCKET; without it (run by hand) nothing is sent.
     */
    void notifyPebble() {
        String socket = System.getenv("PEBBLE_SOCKET");
        if (socket == null || socket.isEmpty()) {
            return;
        }
        String body = "{\"action\":\"add\",\"type\":\"custom\",\"key\":\"" + WORKER_DONE_NOTICE + "\"}";
        String request = "POST /v1/notices HTTP/1.0\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                + "Content-Length: " + body.length() + "\r\n\r\n" + body;
        try (var channel = java.nio.channels.SocketChannel.open(java.net.StandardProtocolFamily.UNIX)) {
            channel.connect(java.net.UnixDomainSocketAddress.of(socket));
            channel.write(java.nio.ByteBuffer.wrap(request.getBytes(StandardCharsets.US_ASCII)));
            var answer = java.nio.ByteBuffer.allocate(512);
            channel.read(answer);
            String status = new String(answer.array(), 0, answer.position(), StandardCharsets.US_ASCII).split("\r\n", 2)[0];
            if (!status.contains(" 200 ")) {
                System.err.println("[" + cfg.worker + "] Pebble refused the done notice: " + status);
            }
        } catch (IOException | RuntimeException e) {
            System.err.println("[" + cfg.worker + "] cannot tell Pebble this worker is done: " + oneLine(e));
        }
    }

    void onSigterm() {
        if (finishing.get()) {
            awaitQuietly(); // the normal end is writing its result; let it finish
            return;
        }
        stopping = true;
        stopSending = true;
        synchronized (lock) {
            if (measureEndNs == Long.MAX_VALUE) {
                measureEndNs = System.nanoTime(); // waiting for acknowledgements is not measured time
            }
        }
        log("SIGTERM: stopping");
        if (cfg.producer()) {
            waitForAcks(STOP_ACK_WAIT_S);
        }
        finish("stopped", "");
    }

    static Supplier<String> tokenSupplier(Path path) {
        // Read at each (re)connection, never stored in a property, a command line or a log.
        return () -> {
            try {
                String token = Files.readString(path, StandardCharsets.UTF_8).trim();
                if (token.isEmpty()) {
                    throw new IllegalStateException("token file " + path + " is empty");
                }
                return token;
            } catch (IOException e) {
                throw new IllegalStateException("cannot read token file " + path + ": " + e.getClass().getSimpleName());
            }
        };
    }

    void closeClient() {
        try {
            if (client != null) {
                client.closeAsync().get(5, TimeUnit.SECONDS);
            }
        } catch (Exception ignored) {
            // Exiting anyway; the result is written.
        }
    }

    /** Sleep until the deadline (nanoTime), waking early when stopping or a worker thread failed. */
    void sleepUntil(long deadlineNs) throws Exception {
        while (!stopping) {
            checkFatal();
            long remaining = deadlineNs - System.nanoTime();
            if (remaining <= 0) {
                return;
            }
            LockSupport.parkNanos(Math.min(remaining, 100_000_000L));
        }
    }

    void checkFatal() throws Exception {
        Throwable t = fatal;
        if (t != null) {
            throw t instanceof Exception e ? e : new ExecutionException(t);
        }
    }

    static long seconds(double s) {
        return (long) (s * 1e9);
    }

    // ------------------------------------------------------------------ producer

    /** The send schedule of one constant rate: message j is due at t0 + j * periodNs. */
    static final class Segment {
        final long t0;
        final double periodNs;
        final double rate;
        final long measureStart; // messages actually sent from this time (to `end`) are measured
        final long end; // no message is due at or after this (Long.MAX_VALUE: open)
        volatile long sentBase = -1; // sentAll when the sender took this segment up

        Segment(long t0, double rate, long measureStart, long end) {
            this.t0 = t0;
            this.rate = rate;
            this.periodNs = 1e9 / rate;
            this.measureStart = measureStart;
            this.end = end;
        }
    }

    volatile Segment segment;

    void runProducer() throws Exception {
        ProducerBuilder<byte[]> builder = client.newProducer(producerSchema())
                .topic(cfg.topic)
                // Who sent a message, readable by any consumer: unit, worker and test.
                .producerName(cfg.unit + ":" + cfg.worker + ":" + cfg.testId)
                .compressionType(cfg.compression)
                .blockIfQueueFull(true)
                .maxPendingMessages(cfg.maxPending)
                .enableBatching(cfg.batchDelayMs > 0);
        if (cfg.batchDelayMs > 0) {
            builder.batchingMaxPublishDelay(cfg.batchDelayMs, TimeUnit.MILLISECONDS)
                    .batchingMaxMessages(cfg.batchMaxMessages)
                    .batchingMaxBytes(cfg.batchMaxBytes);
        }
        producer = builder.create();
        int partitions = Math.max(1, client.getPartitionsForTopic(cfg.topic, false).get(30, TimeUnit.SECONDS).size());
        log("producer on " + cfg.topic + " (" + partitions + " partitions), schema " + schemaName + ", payload "
                + cfg.payload + ", devices " + cfg.deviceFirst + ".." + (cfg.deviceFirst + cfg.deviceCount - 1)
                + (cfg.maxSearch ? ", max search from " : ", rate ") + fmt(cfg.rate) + " msg/s");

        long t0 = System.nanoTime() + 50_000_000L;
        if (cfg.maxSearch) {
            searchDelay = new SingleWriterRecorder(1, PUBLISH_HIGHEST_US, 3);
            segment = new Segment(t0, cfg.rate, Long.MAX_VALUE, Long.MAX_VALUE);
        } else {
            long measureStart = t0 + seconds(cfg.warmupSeconds);
            segment = new Segment(t0, cfg.rate, measureStart, measureStart + seconds(cfg.durationSeconds));
        }
        sender = new Thread(this::sendLoop, "loadgen-sender");
        sender.setDaemon(true);
        sender.start();
        state = cfg.warmupSeconds > 0 ? "warming-up" : state;
        long warmupEnd = t0 + seconds(cfg.warmupSeconds);
        sleepUntil(warmupEnd);
        if (stopping) {
            return;
        }
        if (cfg.maxSearch) {
            state = "searching";
            double found = search();
            if (stopping) {
                return;
            }
            long holdStart = System.nanoTime();
            targetRate = found;
            holding = true;
            segment = new Segment(holdStart, found, holdStart, holdStart + seconds(cfg.durationSeconds));
            log("max search: holding " + fmt(found) + " msg/s for " + cfg.durationSeconds + " s");
        }
        Segment measured = segment;
        startMeasurement(measured.measureStart);
        sleepUntil(measured.end);
        if (stopping) {
            return;
        }
        holdCompleted = true;
        stopSending = true;
        sender.join(seconds(END_ACK_WAIT_S) / 1_000_000);
        waitForAcks(END_ACK_WAIT_S);
        holding = false;
    }

    Schema<byte[]> producerSchema() {
        keys = new String[cfg.deviceCount];
        int width = Long.toString(cfg.deviceTotal - 1).length();
        for (int i = 0; i < cfg.deviceCount; i++) {
            keys[i] = deviceId(cfg.deviceFirst + i, width);
        }
        switch (cfg.payload) {
            case "iot-avro": {
                Schema<SensorReading> avro = Schema.AVRO(SensorReading.class);
                readings = new AvroReadings(cfg, keys, avro);
                schemaName = "AVRO";
                return new PreEncoded(avro.getSchemaInfo());
            }
            case "iot-json": {
                Schema<SensorReading> jsonSchema = Schema.JSON(SensorReading.class);
                readings = new JsonReadings(cfg, keys, jsonSchema);
                schemaName = "JSON";
                return new PreEncoded(jsonSchema.getSchemaInfo());
            }
            default:
                readings = new BytesReadings(cfg.size);
                return Schema.BYTES;
        }
    }

    static String deviceId(long n, int width) {
        String digits = Long.toString(n);
        StringBuilder b = new StringBuilder(7 + width).append("device-");
        for (int i = digits.length(); i < width; i++) {
            b.append('0');
        }
        return b.append(digits).toString();
    }

    /** The acknowledgement of one message: publish latency, counts, failures by reason. */
    final class Ack implements BiConsumer<MessageId, Throwable> {
        final long sendNs;
        final int size;
        final boolean measured;

        Ack(long sendNs, int size, boolean measured) {
            this.sendNs = sendNs;
            this.size = size;
            this.measured = measured;
        }

        @Override
        public void accept(MessageId id, Throwable error) {
            if (error == null) {
                ackedAll.increment();
                if (measured) {
                    publishLatency.record((System.nanoTime() - sendNs) / 1000);
                    acked.increment();
                    bytesAcked.add(size);
                }
                return;
            }
            String reason = reason(error);
            failedAll.increment();
            errors.computeIfAbsent(reason, r -> new LongAdder()).increment();
            if (measured) {
                failed.increment();
                failures.computeIfAbsent(reason, r -> new LongAdder()).increment();
            }
        }
    }

    static String reason(Throwable error) {
        Throwable t = error;
        while ((t instanceof CompletionException || t instanceof ExecutionException) && t.getCause() != null) {
            t = t.getCause();
        }
        return t.getClass().getSimpleName();
    }

    void sendLoop() {
        try {
            final Producer<byte[]> p = producer;
            final Readings r = readings;
            final String[] k = cfg.keys ? keys : null;
            final int devices = cfg.deviceCount;
            int device = 0;
            long sentLocal = 0;
            long measuredLocal = 0;
            Segment seg = null;
            long j = 0;
            while (!stopSending) {
                Segment s = segment;
                if (s != seg) {
                    seg = s;
                    j = 0;
                    seg.sentBase = sentLocal;
                }
                long intended = seg.t0 + (long) (j * seg.periodNs);
                if (intended >= seg.end) {
                    LockSupport.parkNanos(1_000_000L); // this segment is complete: wait for the next or the stop
                    continue;
                }
                long now = System.nanoTime();
                if (intended - now > SPIN_NS) {
                    // Park in bounded steps so a stop or a new segment is noticed at low rates.
                    LockSupport.parkNanos(Math.min(intended - now, 50_000_000L));
                    continue;
                }
                while (intended - now > 0) {
                    Thread.onSpinWait();
                    now = System.nanoTime();
                }
                byte[] payload = r.next(device);
                TypedMessageBuilder<byte[]> message = p.newMessage().value(payload);
                if (k != null) {
                    message.key(k[device]);
                }
                if (++device == devices) {
                    device = 0;
                }
                long sendNs = System.nanoTime();
                boolean measured = sendNs >= seg.measureStart && sendNs < seg.end;
                long delayUs = (sendNs - intended) / 1000;
                if (measured) {
                    publishDelay.record(delayUs);
                    sent.lazySet(++measuredLocal);
                } else if (searchDelay != null) {
                    searchDelay.recordValue(Math.min(delayUs, PUBLISH_HIGHEST_US));
                }
                message.sendAsync().whenComplete(new Ack(sendNs, payload.length, measured));
                sentAll.lazySet(++sentLocal);
                j++;
            }
        } catch (Throwable t) {
            if (!stopSending) {
                fatal = t;
            }
        }
    }

    long pending() {
        return sentAll.get() - ackedAll.sum() - failedAll.sum();
    }

    void waitForAcks(double maxSeconds) {
        long deadline = System.nanoTime() + seconds(maxSeconds);
        try {
            if (producer != null) {
                producer.flushAsync();
            }
        } catch (RuntimeException ignored) {
            // Best effort: waiting below is what matters.
        }
        while (pending() > 0 && System.nanoTime() < deadline) {
            LockSupport.parkNanos(20_000_000L);
        }
    }

    // ------------------------------------------------------------------ max search

    final class Window {
        final double target;
        final double seconds;
        final boolean confirm;
        double achieved;
        double lagGrowthS;
        double delayP99Us;
        long pendingEnd;
        long failedSends;
        boolean sustained;
        double t;

        Window(double target, double seconds, boolean confirm) {
            this.target = target;
            this.seconds = seconds;
            this.confirm = confirm;
        }

        void run() throws Exception {
            long start = System.nanoTime();
            t = (start - measureAnchorNs()) / 1e9;
            targetRate = target;
            Segment seg = new Segment(start, target, Long.MAX_VALUE, Long.MAX_VALUE);
            segment = seg;
            sleepUntil(start + seconds(SEARCH_SETTLE_S));
            searchRecycle = searchDelay.getIntervalHistogram(searchRecycle); // drop the settling period
            long from = System.nanoTime();
            double lag0 = lag(seg, from);
            long acked0 = ackedAll.sum();
            long failed0 = failedAll.sum();
            sleepUntil(from + seconds(seconds));
            long to = System.nanoTime();
            double lag1 = lag(seg, to);
            searchRecycle = searchDelay.getIntervalHistogram(searchRecycle);
            achieved = (ackedAll.sum() - acked0) / ((to - from) / 1e9);
            lagGrowthS = (lag1 - lag0) / target;
            delayP99Us = searchRecycle.getValueAtPercentile(99.0);
            pendingEnd = pending();
            failedSends = failedAll.sum() - failed0;
            double lagBound = (confirm ? 0.005 : 0.015) * seconds;
            sustained = achieved >= SUSTAIN_ACK_RATIO * target
                    && lagGrowthS <= lagBound
                    && delayP99Us <= SUSTAIN_DELAY_P99_US
                    && pendingEnd <= Math.max(1000, 0.5 * target)
                    && failedSends == 0;
        }

        /** Messages due by `now` in this segment that the sender has not handed to the client yet. */
        double lag(Segment seg, long now) {
            double due = Math.floor((now - seg.t0) / seg.periodNs) + 1;
            long base = seg.sentBase;
            double done = base < 0 ? 0 : sentAll.get() - base;
            return Math.max(0, due - done);
        }

        Map<String, Object> step() {
            Map<String, Object> m = new LinkedHashMap<>();
            m.put("t", round(t, 1));
            m.put("target", round(target, 1));
            m.put("achieved", round(achieved, 1));
            m.put("sustained", sustained);
            m.put("window_seconds", seconds);
            m.put("lag_growth_ms", round(lagGrowthS * 1000, 1));
            m.put("publish_delay_p99_us", (long) delayP99Us);
            m.put("pending", pendingEnd);
            m.put("failed", failedSends);
            return m;
        }
    }

    long measureAnchorNs() {
        return startNs;
    }

    final List<Map<String, Object>> searchSteps = new ArrayList<>();
    double foundRate;

    double search() throws Exception {
        double lo = 0; // highest sustained target so far
        double hi = Double.POSITIVE_INFINITY; // lowest unsustained target so far
        double target = cfg.rate;
        double lowestTried = target;
        long deadline = System.nanoTime() + seconds(SEARCH_MAX_S);
        int windows = 0;
        boolean confirmed = false;
        boolean backingOff = false;
        while (windows < SEARCH_MAX_WINDOWS && System.nanoTime() < deadline && !stopping) {
            boolean converged = lo > 0 && hi <= lo * SEARCH_PRECISION;
            Window w = converged ? new Window(lo, CONFIRM_WINDOW_S, true) : new Window(target, SEARCH_WINDOW_S, false);
            w.run();
            if (stopping) {
                break;
            }
            windows++;
            lowestTried = Math.min(lowestTried, w.target);
            searchSteps.add(w.step());
            log(String.format(Locale.ROOT, "max search: %s %.0f msg/s -> achieved %.0f, lag growth %.1f ms, delay p99 %.1f ms: %s",
                    converged ? "confirm" : "try", w.target, w.achieved, w.lagGrowthS * 1000, w.delayP99Us / 1000,
                    w.sustained ? "sustained" : "not sustained"));
            if (converged) {
                if (w.sustained) {
                    confirmed = true;
                    break;
                }
                // The bound did not hold over the longer window: search again just below it.
                hi = lo;
                lo = 0;
                target = hi * CONFIRM_BACKOFF;
                backingOff = true;
                continue;
            }
            if (w.sustained) {
                lo = Math.max(lo, w.target);
            } else {
                hi = Math.min(hi, w.target);
            }
            if (hi == Double.POSITIVE_INFINITY) {
                target = lo * 2;
            } else if (lo == 0) {
                // Nothing sustained yet: halve from the start rate, but after a failed confirmation
                // step down in small steps (the maximum is known to be just below).
                target = backingOff ? target * CONFIRM_BACKOFF : target / 2;
            } else {
                target = (lo + hi) / 2;
            }
        }
        foundRate = lo > 0 ? lo : lowestTried;
        maxSearch = new LinkedHashMap<>();
        maxSearch.put("found_rate", round(foundRate, 1));
        maxSearch.put("confirmed", confirmed);
        maxSearch.put("windows", windows);
        maxSearch.put("stability_cv", null);
        maxSearch.put("held", null);
        maxSearch.put("steps", searchSteps);
        return foundRate;
    }

    volatile boolean holdCompleted;

    /** The max_search entry of the result: the steps, and how the found rate held (under the lock). */
    void finalizeSearchLocked() {
        if (!cfg.producer() || !cfg.maxSearch) {
            return;
        }
        if (maxSearch == null) {
            // Stopped or failed before the search ended: the steps so far, nothing found.
            maxSearch = new LinkedHashMap<>();
            maxSearch.put("found_rate", null);
            maxSearch.put("confirmed", false);
            maxSearch.put("windows", searchSteps.size());
            maxSearch.put("stability_cv", null);
            maxSearch.put("held", false);
            maxSearch.put("hold_completed", false);
            maxSearch.put("steps", searchSteps);
            return;
        }
        double cv = coefficientOfVariation(holdSeconds);
        maxSearch.put("stability_cv", Double.isNaN(cv) ? null : round(cv, 4));
        double elapsed = elapsedSeconds();
        double achieved = elapsed > 0 ? acked.sum() / elapsed : 0;
        double p99 = publishDelay.total.getTotalCount() > 0 ? publishDelay.total.getValueAtPercentile(99.0) : 0;
        boolean held = holdCompleted && achieved >= SUSTAIN_ACK_RATIO * foundRate && p99 <= SUSTAIN_DELAY_P99_US
                && failed.sum() == 0;
        maxSearch.put("held", held);
        maxSearch.put("hold_completed", holdCompleted);
        maxSearch.put("hold_achieved", round(achieved, 1));
        maxSearch.put("hold_publish_delay_p99_us", (long) p99);
        log(String.format(Locale.ROOT, "max search: found %.0f msg/s, hold achieved %.0f msg/s, cv %.4f, %s",
                foundRate, achieved, Double.isNaN(cv) ? 0 : cv, held ? "held" : "NOT held"));
    }

    static double coefficientOfVariation(List<Double> values) {
        if (values.size() < 2) {
            return Double.NaN;
        }
        double mean = 0;
        for (double v : values) {
            mean += v;
        }
        mean /= values.size();
        if (mean == 0) {
            return Double.NaN;
        }
        double var = 0;
        for (double v : values) {
            var += (v - mean) * (v - mean);
        }
        return Math.sqrt(var / (values.size() - 1)) / mean;
    }

    // ------------------------------------------------------------------ consumer

    // Consumer: messages published this long before the subscription are left over from an earlier
    // test on the same topic (an Earliest subscription sees what the topic still holds); the margin
    // allows for the pods' clocks disagreeing.
    static final long STALE_MARGIN_MS = 10_000;
    final LongAdder stale = new LongAdder();
    volatile long measureStartMs = Long.MAX_VALUE; // consumer: messages published from then on are measured

    void runConsumer() throws Exception {
        long subscribedMs = System.currentTimeMillis();
        consumer = client.newConsumer(Schema.BYTES)
                .topic(cfg.topic)
                .subscriptionName(cfg.subscription)
                .subscriptionType(SubscriptionType.Shared)
                .subscriptionInitialPosition(SubscriptionInitialPosition.Earliest)
                .messageListener((c, msg) -> {
                    long nowMs = System.currentTimeMillis();
                    long publishMs = msg.getPublishTime();
                    if (publishMs < subscribedMs - STALE_MARGIN_MS) {
                        stale.increment();
                    } else {
                        receivedAll.increment();
                        long measureFrom = measureStartMs;
                        if (measureFrom == Long.MAX_VALUE) {
                            // The first message of the test starts the warm-up (by its publish time).
                            measureStartMs = measureFrom = publishMs + cfg.warmupSeconds * 1000L;
                        }
                        if (publishMs >= measureFrom) {
                            endToEnd.record(nowMs - publishMs);
                            received.increment();
                            bytesReceived.add(msg.size());
                        }
                    }
                    c.acknowledgeAsync(msg);
                })
                .subscribe();
        long t0 = System.nanoTime();
        log("consumer on " + cfg.topic + ", subscription " + cfg.subscription);
        state = "warming-up";
        // The warm-up starts with the publish time of the first message and a message is measured
        // when it was published after the warm-up, so the consumer measures what the producers
        // measure even when they start before or after it.
        long cap = t0 + seconds(cfg.warmupSeconds + cfg.durationSeconds
                + (cfg.maxSearch ? SEARCH_MAX_S + 30 : 0) + CONSUMER_MAX_DRAIN_S);
        while (!stopping && measureStartMs == Long.MAX_VALUE && System.nanoTime() < cap) {
            checkFatal();
            LockSupport.parkNanos(20_000_000L);
        }
        long measureFromMs = measureStartMs;
        long measureStart = measureFromMs == Long.MAX_VALUE ? System.nanoTime()
                : startNs + (measureFromMs - startMs) * 1_000_000L;
        sleepUntil(measureStart);
        if (stopping) {
            return;
        }
        startMeasurement(measureStart);
        // Run at least warmup + duration from the first message, then until the producers have
        // stopped (no message for a few seconds), within a hard cap that covers a max search.
        long minimum = measureStart + seconds(cfg.durationSeconds);
        cap = Math.max(cap, minimum);
        while (!stopping) {
            checkFatal();
            long now = System.nanoTime();
            long idle;
            synchronized (lock) {
                idle = now - lastChangeNs;
            }
            if ((now >= minimum && idle >= seconds(CONSUMER_IDLE_S)) || now >= cap) {
                break;
            }
            LockSupport.parkNanos(100_000_000L);
        }
        if (stopping) {
            return;
        }
        synchronized (lock) {
            // The idle tail after the last message is not part of the measured phase.
            measureEndNs = Math.max(measureStartNs, Math.min(System.nanoTime(), lastChangeNs));
        }
        consumer.close();
    }

    // ------------------------------------------------------------------ measurement, files

    void startMeasurement(long t0) {
        synchronized (lock) {
            measureStartNs = t0;
            lastIntervalNs = t0;
            // Nothing is recorded before the measured phase (a message is measured by its actual
            // send or its receive time), so the recorders need no reset here.
            hlogBytes = new ByteArrayOutputStream();
            hlog = new HistogramLogWriter(new PrintStream(hlogBytes, true, StandardCharsets.UTF_8));
            long startWallMs = wallMs(t0);
            hlog.outputComment("loadgen-k8s " + cfg.worker + " of " + cfg.unit + ", test " + cfg.testId);
            hlog.outputLogFormatVersion();
            hlog.outputStartTime(startWallMs);
            hlog.setBaseTime(startWallMs);
            hlog.outputBaseTime(startWallMs);
            hlog.outputLegend();
        }
        if (!stopping) {
            state = "running";
        }
    }

    long wallMs(long nanoTime) {
        return startMs + (nanoTime - startNs) / 1_000_000;
    }

    List<Family> families() {
        List<Family> list = new ArrayList<>();
        if (publishLatency != null) {
            list.add(publishLatency);
            list.add(publishDelay);
        }
        if (endToEnd != null) {
            list.add(endToEnd);
        }
        return list;
    }

    double elapsedSeconds() {
        long start = measureStartNs;
        if (start == Long.MAX_VALUE) {
            return 0;
        }
        long end = Math.min(System.nanoTime(), measureEndNs);
        if (cfg.producer() && segment != null && segment.end != Long.MAX_VALUE && segment.measureStart == start) {
            end = Math.min(end, segment.end);
        }
        return Math.max(0, (end - start) / 1e9);
    }

    /** Close the current interval: its counts, its histograms into the hlog, the totals and the list. */
    void flushIntervalLocked(long now) {
        if (measureStartNs == Long.MAX_VALUE || hlog == null) {
            return;
        }
        double seconds = (now - lastIntervalNs) / 1e9;
        if (seconds < 0.001) {
            return;
        }
        long fromMs = wallMs(lastIntervalNs);
        long toMs = wallMs(now);
        lastIntervalNs = now;
        Map<String, Object> interval = new LinkedHashMap<>();
        interval.put("seconds", round(seconds, 3));
        // Swap every recorder first, then read the counters, so counts and histograms cover the same span.
        List<Family> list = families();
        Histogram[] histograms = new Histogram[list.size()];
        for (int i = 0; i < histograms.length; i++) {
            histograms[i] = list.get(i).interval();
        }
        long s = sent.get();
        long a = acked.sum();
        long r = received.sum();
        long f = failed.sum();
        interval.put("sent", s - intervalSent);
        interval.put("acknowledged", a - intervalAcked);
        interval.put("received", r - intervalReceived);
        interval.put("failed", f - intervalFailed);
        interval.put("backlog", 0);
        intervalSent = s;
        intervalAcked = a;
        intervalReceived = r;
        intervalFailed = f;
        Map<String, String> encoded = new LinkedHashMap<>();
        encoded.put("publish_latency", "");
        encoded.put("publish_delay", "");
        encoded.put("end_to_end", "");
        for (int i = 0; i < histograms.length; i++) {
            Family family = list.get(i);
            Histogram h = histograms[i];
            family.total.add(h);
            h.setTag(family.tag);
            h.setStartTimeStamp(fromMs);
            h.setEndTimeStamp(toMs);
            hlog.outputIntervalHistogram(h);
            encoded.put(family.tag, encode(h));
        }
        interval.putAll(encoded);
        intervals.add(interval);
        try {
            writeBytes(file(".hlog"), hlogBytes.toByteArray());
        } catch (IOException e) {
            fatal = e;
        }
    }

    /** Periodic work on one thread: per-second samples, progress, intervals, the stdout summary. */
    void tick() {
        long now = System.nanoTime();
        long nextSecond = now + 1_000_000_000L;
        long nextProgress = now;
        long nextSummary = now + SUMMARY_NS;
        long nextInterval = Long.MAX_VALUE;
        long intervalNs = seconds(cfg.intervalSeconds);
        lastProgressNs = now;
        while (finished.getCount() > 0 && !finishing.get()) {
            now = System.nanoTime();
            try {
                synchronized (lock) {
                    if (finishing.get()) {
                        break;
                    }
                    if (nextInterval == Long.MAX_VALUE && measureStartNs != Long.MAX_VALUE) {
                        nextInterval = measureStartNs + intervalNs;
                    }
                    if (now >= nextSecond) {
                        sampleSecond(now);
                        nextSecond += 1_000_000_000L;
                    }
                    if (now >= nextInterval) {
                        flushIntervalLocked(nextInterval);
                        nextInterval += intervalNs;
                    }
                    if (now >= nextProgress) {
                        writeProgressLocked(now);
                        nextProgress = now + seconds(cfg.progressSeconds);
                    }
                }
                if (now >= nextSummary) {
                    log(summary());
                    nextSummary += SUMMARY_NS;
                }
            } catch (Throwable t) {
                fatal = t;
                return;
            }
            long next = Math.min(Math.min(nextSecond, nextProgress), Math.min(nextSummary, nextInterval));
            LockSupport.parkNanos(Math.max(1_000_000L, Math.min(next - System.nanoTime(), 100_000_000L)));
        }
    }

    void sampleSecond(long now) {
        long count = cfg.producer() ? ackedAll.sum() : receivedAll.sum();
        if (count != lastSecondCount) {
            lastChangeNs = now;
        }
        if (holding) {
            holdSeconds.add((double) (count - lastSecondCount));
        }
        lastSecondCount = count;
    }

    String summary() {
        double elapsed = elapsedSeconds();
        if (cfg.producer()) {
            return String.format(Locale.ROOT,
                    "%s elapsed=%.1fs target=%.0f rate=%.0f/s sent=%d acked=%d failed=%d pending=%d",
                    state, elapsed, targetRate, currentRate, sent.get(), acked.sum(), failed.sum(), pending());
        }
        return String.format(Locale.ROOT, "%s elapsed=%.1fs rate=%.0f/s received=%d", state, elapsed, currentRate,
                received.sum());
    }

    void writeProgressLocked(long now) throws IOException {
        long count = cfg.producer() ? ackedAll.sum() : receivedAll.sum();
        double period = (now - lastProgressNs) / 1e9;
        if (period > 0.05) {
            currentRate = (count - lastProgressCount) / period;
            lastProgressNs = now;
            lastProgressCount = count;
        }
        Map<String, Object> p = new LinkedHashMap<>();
        p.put("worker", cfg.worker);
        p.put("unit", cfg.unit);
        p.put("test_id", cfg.testId);
        p.put("state", state);
        p.put("elapsed_seconds", round(elapsedSeconds(), 3));
        p.put("target_rate", round(targetRate, 1));
        p.put("current_rate", round(currentRate, 1));
        p.put("sent", sent.get());
        p.put("acknowledged", acked.sum());
        p.put("received", received.sum());
        p.put("failed", failed.sum());
        p.put("errors", counts(errors));
        p.put("updated_ms", System.currentTimeMillis());
        writeJson(file(".progress.json"), p);
    }

    static Map<String, Long> counts(Map<String, LongAdder> adders) {
        Map<String, Long> m = new TreeMap<>();
        adders.forEach((k, v) -> m.put(k, v.sum()));
        return m;
    }

    /** Write the result once (the first caller wins; a later one waits for it). */
    void finish(String finalState, String error) {
        if (!finishing.compareAndSet(false, true)) {
            awaitQuietly();
            return;
        }
        try {
            stopSending = true;
            synchronized (lock) {
                state = finalState;
                long now = System.nanoTime();
                if (measureEndNs == Long.MAX_VALUE) {
                    measureEndNs = now;
                }
                flushIntervalLocked(now);
                holding = false;
                finalizeSearchLocked();
                Map<String, Object> result = result(finalState, error);
                try {
                    writeJson(file(".result.json"), result);
                    writeProgressLocked(now);
                } catch (IOException e) {
                    System.err.println("[" + cfg.worker + "] cannot write the result: " + oneLine(e));
                }
            }
            double elapsed = elapsedSeconds();
            long count = cfg.producer() ? acked.sum() : received.sum();
            log(String.format(Locale.ROOT, "result: %s elapsed=%.1fs achieved=%.0f/s sent=%d acked=%d received=%d failed=%d%s",
                    finalState, elapsed, elapsed > 0 ? count / elapsed : 0.0, sent.get(), acked.sum(), received.sum(),
                    failed.sum(), error.isEmpty() ? "" : " error=" + error));
            notifyPebble();
        } finally {
            finished.countDown();
        }
    }

    Map<String, Object> result(String finalState, String error) {
        Map<String, Object> r = new LinkedHashMap<>();
        boolean producing = cfg.producer();
        double elapsed = elapsedSeconds();
        long sentCount = sent.get();
        long ackedCount = acked.sum();
        Map<String, Long> failedByReason = counts(failures);
        long unresolved = sentCount - ackedCount - failed.sum();
        if (producing && unresolved > 0) {
            // Sent in the measured phase and neither acknowledged nor failed by the end: a failure too.
            failedByReason.merge("Unacknowledged", unresolved, Long::sum);
        }
        r.put("unit", cfg.unit);
        r.put("worker", cfg.worker);
        r.put("role", cfg.role);
        r.put("test_id", cfg.testId);
        r.put("state", finalState);
        r.put("error", error);
        r.put("target_rate", producing ? round(targetRate, 1) : 0.0);
        r.put("sent", sentCount);
        r.put("acknowledged", ackedCount);
        r.put("received", received.sum());
        r.put("failed", failedByReason);
        long bytes = producing ? bytesAcked.sum() : 0;
        r.put("bytes_uncompressed", bytes);
        double ratio = producing ? compressionRatio() : 1.0;
        r.put("bytes_compressed", Math.round(bytes * ratio));
        r.put("bytes_compressed_estimated", producing && cfg.compression != CompressionType.NONE);
        r.put("compression_ratio", round(ratio, 4));
        double avg;
        if (producing) {
            avg = ackedCount > 0 ? (double) bytes / ackedCount : readings != null ? readings.averageSize() : 0;
        } else {
            long n = received.sum();
            avg = n > 0 ? (double) bytesReceived.sum() / n : 0;
            r.put("bytes_received", bytesReceived.sum());
            r.put("stale_skipped", stale.sum());
        }
        r.put("encoded_size_avg", round(avg, 2));
        r.put("payload", cfg.payload);
        r.put("schema", producing ? schemaName : "BYTES (consumer decodes nothing)");
        r.put("elapsed_seconds", round(elapsed, 3));
        r.put("achieved_rate", elapsed > 0 ? round((producing ? ackedCount : received.sum()) / elapsed, 1) : 0.0);
        r.put("backlog", 0);
        r.put("publish_latency", producing ? encode(publishLatency.total) : "");
        r.put("publish_delay", producing ? encode(publishDelay.total) : "");
        r.put("end_to_end", producing ? "" : encode(endToEnd.total));
        Map<String, Long> clamped = new LinkedHashMap<>();
        for (Family f : families()) {
            clamped.put(f.tag, f.clamped.get());
        }
        r.put("clamped", clamped);
        r.put("errors", counts(errors));
        r.put("intervals", intervals);
        r.put("max_search", producing ? maxSearch : null);
        r.put("device_first", cfg.deviceFirst);
        r.put("device_count", cfg.deviceCount);
        r.put("client_version", clientVersion());
        return r;
    }

    static String clientVersion() {
        try {
            return org.apache.pulsar.PulsarVersion.getVersion();
        } catch (Throwable t) {
            return "unknown";
        }
    }

    /**
     * Compressed / uncompressed size of representative batches of this worker's keys and payloads,
     * compressed with the client's codec. Batch size: what one batching window collects per partition.
     */
    double compressionRatio() {
        if (cfg.compression == CompressionType.NONE || readings == null) {
            return 1.0;
        }
        try {
            int partitions = Math.max(1, client.getPartitionsForTopic(cfg.topic, false).get(5, TimeUnit.SECONDS).size());
            double rate = targetRate > 0 ? targetRate : cfg.rate;
            int perBatch = 1;
            if (cfg.batchDelayMs > 0) {
                perBatch = (int) Math.max(1, Math.min(cfg.batchMaxMessages, Math.round(rate * cfg.batchDelayMs / 1000.0 / partitions)));
            }
            CompressionCodec codec = CompressionCodecProvider.getCompressionCodec(cfg.compression);
            Readings sample = readings.copy();
            long raw = 0;
            long compressed = 0;
            int device = 0;
            for (int batch = 0; batch < 20; batch++) {
                ByteArrayOutputStream b = new ByteArrayOutputStream();
                for (int i = 0; i < perBatch && b.size() < cfg.batchMaxBytes; i++) {
                    if (cfg.keys) {
                        b.writeBytes(keys[device].getBytes(StandardCharsets.US_ASCII));
                    }
                    b.writeBytes(sample.next(device));
                    device = (device + 1) % cfg.deviceCount;
                }
                byte[] data = b.toByteArray();
                ByteBuf in = Unpooled.wrappedBuffer(data);
                ByteBuf out = codec.encode(in);
                raw += data.length;
                compressed += out.readableBytes();
                out.release();
                in.release();
            }
            return raw > 0 ? (double) compressed / raw : 1.0;
        } catch (Exception e) {
            log("cannot estimate the compression ratio: " + oneLine(e));
            return 1.0;
        }
    }

    // ------------------------------------------------------------------ files and helpers

    static final ObjectMapper WRITER = new ObjectMapper();

    static void writeJson(Path path, Object value) throws IOException {
        writeBytes(path, WRITER.writeValueAsBytes(value));
    }

    static void writeBytes(Path path, byte[] data) throws IOException {
        Path tmp = path.resolveSibling(path.getFileName() + ".tmp");
        Files.write(tmp, data);
        Files.move(tmp, path, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
    }

    static double round(double v, int digits) {
        if (Double.isNaN(v) || Double.isInfinite(v)) {
            return 0.0;
        }
        double scale = Math.pow(10, digits);
        return Math.round(v * scale) / scale;
    }

    static String fmt(double v) {
        return String.format(Locale.ROOT, "%.0f", v);
    }

    static String oneLine(Throwable t) {
        Throwable root = t;
        while ((root instanceof CompletionException || root instanceof ExecutionException) && root.getCause() != null) {
            root = root.getCause();
        }
        String message = root.getMessage();
        String text = root.getClass().getSimpleName() + (message == null ? "" : ": " + message);
        return text.replaceAll("\\s+", " ").trim();
    }

    // ------------------------------------------------------------------ payloads

    /** The producer's pass-through schema: carries the AVRO/JSON SchemaInfo, sends pre-encoded bytes. */
    static final class PreEncoded implements Schema<byte[]> {
        final SchemaInfo info;

        PreEncoded(SchemaInfo info) {
            this.info = info;
        }

        @Override
        public byte[] encode(byte[] message) {
            return message;
        }

        @Override
        public byte[] decode(byte[] bytes, byte[] schemaVersion) {
            return bytes;
        }

        @Override
        public SchemaInfo getSchemaInfo() {
            return info;
        }

        @Override
        public Schema<byte[]> clone() {
            return this;
        }
    }

    /** Payload source; next() is called by the sender thread only. */
    abstract static class Readings {
        abstract byte[] next(int device);

        abstract Readings copy();

        abstract double averageSize();
    }

    static final class BytesReadings extends Readings {
        final byte[] payload;

        BytesReadings(int size) {
            payload = new byte[size];
            new SplittableRandom().nextBytes(payload);
        }

        @Override
        byte[] next(int device) {
            return payload; // the client does not modify it; pulsar-perf sends one array likewise
        }

        @Override
        Readings copy() {
            return this;
        }

        @Override
        double averageSize() {
            return payload.length;
        }
    }

    static final String[] SENSOR_TYPES = {"temperature", "humidity", "pressure", "co2", "vibration"};
    static final String[] SENSOR_UNITS = {"C", "%", "hPa", "ppm", "mm/s"};
    static final long[] SENSOR_BASE_CENTS = {2150, 4500, 101325, 42000, 250};
    static final String[] STATUSES = {"OK", "WARN", "ALARM"};
    static final int FIRMWARE_VARIANTS = 12;

    /** A sensor reading per message: per-device strings fixed, timestamp/value/status/sequence varying. */
    abstract static class IotReadings extends Readings {
        final Config cfg;
        final String[] keys;
        final long[] sequence;
        long rng = 0x9E3779B97F4A7C15L; // xorshift64 state
        byte[] scratch = new byte[512];
        long sizeSum;
        long sizeCount;
        // The fields of the last reading, for the start-up check.
        long lastTimestamp;
        long lastCents;
        int lastStatus;
        long lastSequence;

        IotReadings(Config cfg, String[] keys) {
            this.cfg = cfg;
            this.keys = keys;
            this.sequence = new long[keys.length];
        }

        long deviceNumber(int device) {
            return cfg.deviceFirst + device;
        }

        String customerId(int device) {
            return String.format(Locale.ROOT, "customer-%04d", deviceNumber(device) / 1000);
        }

        String siteId(int device) {
            return String.format(Locale.ROOT, "site-%05d", deviceNumber(device) / 25);
        }

        int type(int device) {
            return (int) (deviceNumber(device) % SENSOR_TYPES.length);
        }

        static String firmware(int variant) {
            return "fw-" + (2 + variant % 3) + "." + (variant % 4) + ".1";
        }

        int firmwareVariant(int device) {
            return (int) (deviceNumber(device) % FIRMWARE_VARIANTS);
        }

        @Override
        final byte[] next(int device) {
            long x = rng;
            x ^= x << 13;
            x ^= x >>> 7;
            x ^= x << 17;
            rng = x;
            long cents = SENSOR_BASE_CENTS[type(device)] + Math.floorMod(x, 2001) - 1000;
            int bits = (int) (x >>> 40);
            int status = (bits & 1023) == 0 ? 2 : (bits & 63) == 0 ? 1 : 0;
            long seq = ++sequence[device];
            long ts = System.currentTimeMillis();
            lastTimestamp = ts;
            lastCents = cents;
            lastStatus = status;
            lastSequence = seq;
            int length = write(device, ts, cents, status, seq);
            sizeSum += length;
            sizeCount++;
            return Arrays.copyOf(scratch, length);
        }

        /** Encode into scratch; the encoded length. */
        abstract int write(int device, long ts, long cents, int status, long seq);

        SensorReading pojo(int device, long ts, long cents, int status, long seq) {
            SensorReading r = new SensorReading();
            r.deviceId = keys[device];
            r.customerId = customerId(device);
            r.siteId = siteId(device);
            r.sensorType = SENSOR_TYPES[type(device)];
            r.timestamp = ts;
            r.value = cents / 100.0;
            r.unit = SENSOR_UNITS[type(device)];
            r.status = STATUSES[status];
            r.sequence = seq;
            r.firmwareVersion = firmware(firmwareVariant(device));
            return r;
        }

        SensorReading lastPojo(int device) {
            return pojo(device, lastTimestamp, lastCents, lastStatus, lastSequence);
        }

        @Override
        double averageSize() {
            return sizeCount > 0 ? (double) sizeSum / sizeCount : 0;
        }
    }

    /**
     * AVRO binary of SensorReading as Schema.AVRO's reflection makes it: string fields are unions
     * [null, string] (branch 1, then length and UTF-8), longs zig-zag varints, the double 8 bytes
     * little-endian, fields in the schema's order (read from the schema: Pulsar sorts them by name).
     * Checked byte for byte against Schema.AVRO's own encoding at start-up.
     */
    static final class AvroReadings extends IotReadings {
        static final List<String> FIELDS = List.of("deviceId", "customerId", "siteId", "sensorType", "timestamp",
                "value", "unit", "status", "sequence", "firmwareVersion");
        final int[] order; // indexes into FIELDS, in the schema's order
        final byte[][] deviceIds; // per device
        final byte[][] customers; // per customer of the slice
        final byte[][] sites; // per site of the slice
        final long firstCustomer;
        final long firstSite;
        final byte[][] types = new byte[SENSOR_TYPES.length][];
        final byte[][] units = new byte[SENSOR_TYPES.length][];
        final byte[][] statuses = new byte[STATUSES.length][];
        final byte[][] firmwares = new byte[FIRMWARE_VARIANTS][];

        AvroReadings(Config cfg, String[] keys, Schema<SensorReading> schema) {
            super(cfg, keys);
            String definition = new String(schema.getSchemaInfo().getSchema(), StandardCharsets.UTF_8);
            List<org.apache.avro.Schema.Field> fields = new org.apache.avro.Schema.Parser().parse(definition).getFields();
            order = new int[fields.size()];
            for (int i = 0; i < order.length; i++) {
                order[i] = FIELDS.indexOf(fields.get(i).name());
                if (order[i] < 0) {
                    throw new IllegalStateException("unexpected field in the SensorReading schema: " + fields.get(i).name());
                }
            }
            deviceIds = new byte[keys.length][];
            for (int d = 0; d < keys.length; d++) {
                deviceIds[d] = string(keys[d]);
            }
            long last = cfg.deviceFirst + keys.length - 1;
            firstCustomer = cfg.deviceFirst / 1000;
            customers = new byte[(int) (last / 1000 - firstCustomer + 1)][];
            for (int i = 0; i < customers.length; i++) {
                customers[i] = string(String.format(Locale.ROOT, "customer-%04d", firstCustomer + i));
            }
            firstSite = cfg.deviceFirst / 25;
            sites = new byte[(int) (last / 25 - firstSite + 1)][];
            for (int i = 0; i < sites.length; i++) {
                sites[i] = string(String.format(Locale.ROOT, "site-%05d", firstSite + i));
            }
            for (int i = 0; i < types.length; i++) {
                types[i] = string(SENSOR_TYPES[i]);
                units[i] = string(SENSOR_UNITS[i]);
            }
            for (int i = 0; i < statuses.length; i++) {
                statuses[i] = string(STATUSES[i]);
            }
            for (int i = 0; i < firmwares.length; i++) {
                firmwares[i] = string(firmware(i));
            }
            verify(schema);
        }

        private AvroReadings(AvroReadings o) {
            super(o.cfg, o.keys);
            order = o.order;
            deviceIds = o.deviceIds;
            customers = o.customers;
            sites = o.sites;
            firstCustomer = o.firstCustomer;
            firstSite = o.firstSite;
            System.arraycopy(o.types, 0, types, 0, types.length);
            System.arraycopy(o.units, 0, units, 0, units.length);
            System.arraycopy(o.statuses, 0, statuses, 0, statuses.length);
            System.arraycopy(o.firmwares, 0, firmwares, 0, firmwares.length);
        }

        @Override
        Readings copy() {
            return new AvroReadings(this);
        }

        void verify(Schema<SensorReading> schema) {
            // Readings across devices, statuses and varint lengths.
            for (int i = 0; i < 2000; i++) {
                int device = (int) ((i * 7919L) % keys.length);
                byte[] ours = next(device);
                byte[] theirs = schema.encode(lastPojo(device));
                if (!Arrays.equals(ours, theirs)) {
                    throw new IllegalStateException("the AVRO encoder disagrees with Schema.AVRO(SensorReading) for "
                            + keys[device] + " (" + ours.length + " vs " + theirs.length + " bytes)");
                }
            }
            Arrays.fill(sequence, 0);
            sizeSum = 0;
            sizeCount = 0;
        }

        static byte[] string(String s) {
            byte[] utf8 = s.getBytes(StandardCharsets.UTF_8);
            byte[] out = new byte[1 + 10 + utf8.length];
            out[0] = 2; // union branch 1 (string), zig-zag encoded
            int p = writeLong(out, 1, utf8.length);
            System.arraycopy(utf8, 0, out, p, utf8.length);
            return Arrays.copyOf(out, p + utf8.length);
        }

        static int writeLong(byte[] b, int p, long n) {
            long z = (n << 1) ^ (n >> 63);
            while ((z & ~0x7FL) != 0) {
                b[p++] = (byte) ((z & 0x7F) | 0x80);
                z >>>= 7;
            }
            b[p++] = (byte) z;
            return p;
        }

        static int put(byte[] b, int p, byte[] part) {
            System.arraycopy(part, 0, b, p, part.length);
            return p + part.length;
        }

        @Override
        int write(int device, long ts, long cents, int status, long seq) {
            byte[] b = scratch;
            int p = 0;
            long number = cfg.deviceFirst + device;
            for (int field : order) {
                switch (field) {
                    case 0 -> p = put(b, p, deviceIds[device]);
                    case 1 -> p = put(b, p, customers[(int) (number / 1000 - firstCustomer)]);
                    case 2 -> p = put(b, p, sites[(int) (number / 25 - firstSite)]);
                    case 3 -> p = put(b, p, types[type(device)]);
                    case 4 -> p = writeLong(b, p, ts);
                    case 5 -> {
                        long bits = Double.doubleToLongBits(cents / 100.0);
                        for (int i = 0; i < 8; i++) {
                            b[p++] = (byte) (bits >>> (8 * i));
                        }
                    }
                    case 6 -> p = put(b, p, units[type(device)]);
                    case 7 -> p = put(b, p, statuses[status]);
                    case 8 -> p = writeLong(b, p, seq);
                    default -> p = put(b, p, firmwares[firmwareVariant(device)]);
                }
            }
            return p;
        }
    }

    /** Compact JSON of SensorReading (Jackson's field names), checked with Schema.JSON's decoder at start-up. */
    static final class JsonReadings extends IotReadings {
        final byte[][] head; // {"deviceId":...,"sensorType":"...","timestamp":
        final byte[][] middles = new byte[SENSOR_TYPES.length][]; // ,"unit":"C","status":"
        final byte[][] statuses = new byte[STATUSES.length][]; // OK","sequence":
        final byte[][] tails = new byte[FIRMWARE_VARIANTS][]; // ,"firmwareVersion":"..."}
        static final byte[] VALUE = ",\"value\":".getBytes(StandardCharsets.US_ASCII);

        JsonReadings(Config cfg, String[] keys, Schema<SensorReading> schema) {
            super(cfg, keys);
            head = new byte[keys.length][];
            for (int d = 0; d < keys.length; d++) {
                head[d] = ascii("{\"deviceId\":\"" + keys[d] + "\",\"customerId\":\"" + customerId(d) + "\",\"siteId\":\""
                        + siteId(d) + "\",\"sensorType\":\"" + SENSOR_TYPES[type(d)] + "\",\"timestamp\":");
            }
            for (int i = 0; i < middles.length; i++) {
                middles[i] = ascii(",\"unit\":\"" + SENSOR_UNITS[i] + "\",\"status\":\"");
            }
            for (int i = 0; i < statuses.length; i++) {
                statuses[i] = ascii(STATUSES[i] + "\",\"sequence\":");
            }
            for (int i = 0; i < tails.length; i++) {
                tails[i] = ascii(",\"firmwareVersion\":\"" + firmware(i) + "\"}");
            }
            verify(schema);
        }

        private JsonReadings(JsonReadings other) {
            super(other.cfg, other.keys);
            head = other.head;
            System.arraycopy(other.middles, 0, middles, 0, middles.length);
            System.arraycopy(other.statuses, 0, statuses, 0, statuses.length);
            System.arraycopy(other.tails, 0, tails, 0, tails.length);
        }

        @Override
        Readings copy() {
            return new JsonReadings(this);
        }

        static byte[] ascii(String s) {
            return s.getBytes(StandardCharsets.UTF_8);
        }

        void verify(Schema<SensorReading> schema) {
            for (int i = 0; i < 200; i++) {
                int device = i % keys.length;
                byte[] ours = next(device);
                SensorReading expected = lastPojo(device);
                SensorReading decoded = schema.decode(ours);
                if (!expected.same(decoded)) {
                    throw new IllegalStateException("Schema.JSON(SensorReading) decodes our JSON differently: "
                            + new String(ours, StandardCharsets.UTF_8));
                }
            }
            Arrays.fill(sequence, 0);
            sizeSum = 0;
            sizeCount = 0;
        }

        static int put(byte[] b, int p, byte[] part) {
            System.arraycopy(part, 0, b, p, part.length);
            return p + part.length;
        }

        static int digits(byte[] b, int p, long n) {
            if (n < 0) {
                b[p++] = '-';
                n = -n;
            }
            int start = p;
            do {
                b[p++] = (byte) ('0' + (n % 10));
                n /= 10;
            } while (n > 0);
            for (int i = start, k = p - 1; i < k; i++, k--) {
                byte t = b[i];
                b[i] = b[k];
                b[k] = t;
            }
            return p;
        }

        @Override
        int write(int device, long ts, long cents, int status, long seq) {
            byte[] b = scratch;
            int p = put(b, 0, head[device]);
            p = digits(b, p, ts);
            p = put(b, p, VALUE);
            long c = cents;
            if (c < 0) {
                b[p++] = '-';
                c = -c;
            }
            p = digits(b, p, c / 100);
            b[p++] = '.';
            b[p++] = (byte) ('0' + (c % 100) / 10);
            b[p++] = (byte) ('0' + c % 10);
            p = put(b, p, middles[type(device)]);
            p = put(b, p, statuses[status]);
            p = digits(b, p, seq);
            return put(b, p, tails[firmwareVariant(device)]);
        }
    }
}

/**
 * One IoT sensor reading: the message value of the iot-avro and iot-json payloads. Its AVRO schema
 * (Schema.AVRO(SensorReading.class): record SensorReading, no namespace, strings nullable) is what
 * the producers register on the topic; a consumer decodes with the same class or the registered schema.
 */
class SensorReading {
    public String deviceId;
    public String customerId;
    public String siteId;
    public String sensorType;
    public long timestamp;
    public double value;
    public String unit;
    public String status;
    public long sequence;
    public String firmwareVersion;

    public SensorReading() {
    }

    boolean same(SensorReading o) {
        return o != null && java.util.Objects.equals(deviceId, o.deviceId) && java.util.Objects.equals(customerId, o.customerId)
                && java.util.Objects.equals(siteId, o.siteId) && java.util.Objects.equals(sensorType, o.sensorType)
                && timestamp == o.timestamp && Double.compare(value, o.value) == 0 && java.util.Objects.equals(unit, o.unit)
                && java.util.Objects.equals(status, o.status) && sequence == o.sequence
                && java.util.Objects.equals(firmwareVersion, o.firmwareVersion);
    }
}
