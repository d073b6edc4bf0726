import java.io.BufferedOutputStream;
import java.io.FileOutputStream;
import java.io.IOException;
import java.io.PrintStream;
import java.lang.management.ManagementFactory;
import java.lang.reflect.Method;
import java.net.InetSocketAddress;
import java.net.SocketAddress;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.Semaphore;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;
import java.util.zip.CRC32;

import org.apache.rocketmq.client.consumer.DefaultMQPushConsumer;
import org.apache.rocketmq.client.consumer.MessageSelector;
import org.apache.rocketmq.client.consumer.listener.ConsumeConcurrentlyStatus;
import org.apache.rocketmq.client.consumer.listener.ConsumeOrderlyStatus;
import org.apache.rocketmq.client.consumer.listener.MessageListenerConcurrently;
import org.apache.rocketmq.client.consumer.listener.MessageListenerOrderly;
import org.apache.rocketmq.client.producer.DefaultMQProducer;
import org.apache.rocketmq.client.producer.LocalTransactionState;
import org.apache.rocketmq.client.producer.MessageQueueSelector;
import org.apache.rocketmq.client.producer.SendCallback;
import org.apache.rocketmq.client.producer.SendResult;
import org.apache.rocketmq.client.producer.TransactionListener;
import org.apache.rocketmq.client.producer.TransactionMQProducer;
import org.apache.rocketmq.client.producer.TransactionSendResult;
import org.apache.rocketmq.client.utils.MessageUtil;
import org.apache.rocketmq.common.MQVersion;
import org.apache.rocketmq.common.consumer.ConsumeFromWhere;
import org.apache.rocketmq.common.message.Message;
import org.apache.rocketmq.common.message.MessageAccessor;
import org.apache.rocketmq.common.message.MessageClientExt;
import org.apache.rocketmq.common.message.MessageExt;
import org.apache.rocketmq.common.message.MessageQueue;

/**
 * Command-line peer around the official Java client, for interop tests and benchmarks.
 *
 * <p>stdout carries only JSON lines (one per message, or one summary); diagnostics go to
 * stderr. Exit codes: 0 done, 1 error, 2 timed out, 3 usage error.
 * See interop/README.md for the commands.
 */
public final class Peer {
    private static final long JVM_START_MS = ManagementFactory.getRuntimeMXBean().getStartTime();
    private static final PrintStream OUT =
            new PrintStream(new BufferedOutputStream(new FileOutputStream(java.io.FileDescriptor.out), 1 << 16),
                    false, StandardCharsets.UTF_8);

    private Peer() {
    }

    // ------------------------------------------------------------------ arguments

    static final class UsageError extends RuntimeException {
        UsageError(String message) {
            super(message);
        }
    }

    static final class Args {
        final String command;
        final Map<String, List<String>> values = new HashMap<>();
        final java.util.Set<String> flags = new java.util.HashSet<>();

        private static final java.util.Set<String> FLAG_NAMES = new java.util.HashSet<>(
                Arrays.asList("sql", "orderly", "broadcast", "pop", "trace", "random"));

        Args(String[] argv) {
            if (argv.length == 0) {
                throw new UsageError("no command");
            }
            command = argv[0];
            for (int i = 1; i < argv.length; i++) {
                String a = argv[i];
                if (!a.startsWith("--")) {
                    throw new UsageError("unexpected argument: " + a);
                }
                String name = a.substring(2);
                String value = null;
                int eq = name.indexOf('=');
                if (eq >= 0 && !name.startsWith("prop")) {
                    value = name.substring(eq + 1);
                    name = name.substring(0, eq);
                }
                if (FLAG_NAMES.contains(name)) {
                    flags.add(name);
                    continue;
                }
                if (value == null) {
                    if (i + 1 >= argv.length) {
                        throw new UsageError("option --" + name + " needs a value");
                    }
                    value = argv[++i];
                }
                values.computeIfAbsent(name, k -> new ArrayList<>()).add(value);
            }
        }

        String str(String name, String dflt) {
            List<String> v = values.get(name);
            return v == null ? dflt : v.get(v.size() - 1);
        }

        String required(String name) {
            String v = str(name, null);
            if (v == null) {
                throw new UsageError("--" + name + " is required for " + command);
            }
            return v;
        }

        int integer(String name, int dflt) {
            String v = str(name, null);
            return v == null ? dflt : Integer.parseInt(v);
        }

        long longValue(String name, long dflt) {
            String v = str(name, null);
            return v == null ? dflt : Long.parseLong(v);
        }

        List<String> all(String name) {
            List<String> v = values.get(name);
            return v == null ? Collections.emptyList() : v;
        }

        boolean flag(String name) {
            return flags.contains(name);
        }
    }

    // ------------------------------------------------------------------ JSON

    static final class Json {
        /** key -> JSON text of the value; a key put again keeps its place and takes the new value. */
        private final LinkedHashMap<String, String> entries = new LinkedHashMap<>();

        private Json raw(String k, String json) {
            entries.put(k, json);
            return this;
        }

        Json put(String k, String v) {
            if (v == null) {
                return raw(k, "null");
            }
            StringBuilder sb = new StringBuilder(v.length() + 2);
            quote(sb, v);
            return raw(k, sb.toString());
        }

        Json put(String k, long v) {
            return raw(k, Long.toString(v));
        }

        Json put(String k, double v) {
            if (Double.isNaN(v) || Double.isInfinite(v)) {
                return raw(k, "null");
            }
            return raw(k, String.format(Locale.ROOT, "%.6f", v));
        }

        Json put(String k, boolean v) {
            return raw(k, Boolean.toString(v));
        }

        Json put(String k, Json nested) {
            return raw(k, nested.toString());
        }

        Json putMap(String k, Map<String, String> map) {
            Json nested = new Json();
            if (map != null) {
                for (Map.Entry<String, String> e : new TreeMap<>(map).entrySet()) {
                    nested.put(e.getKey(), e.getValue());
                }
            }
            return put(k, nested);
        }

        @Override
        public String toString() {
            StringBuilder sb = new StringBuilder(256);
            sb.append('{');
            boolean first = true;
            for (Map.Entry<String, String> e : entries.entrySet()) {
                if (!first) {
                    sb.append(',');
                }
                first = false;
                quote(sb, e.getKey());
                sb.append(':').append(e.getValue());
            }
            return sb.append('}').toString();
        }

        static void quote(StringBuilder sb, String s) {
            sb.append('"');
            for (int i = 0; i < s.length(); i++) {
                char c = s.charAt(i);
                switch (c) {
                    case '"':
                        sb.append("\\\"");
                        break;
                    case '\\':
                        sb.append("\\\\");
                        break;
                    case '\n':
                        sb.append("\\n");
                        break;
                    case '\r':
                        sb.append("\\r");
                        break;
                    case '\t':
                        sb.append("\\t");
                        break;
                    default:
                        if (c < 0x20 || c > 0x7e) {
                            // ASCII-only output: independent of the platform encoding;
                            // surrogate pairs pass through as two escapes, as JSON wants.
                            sb.append(String.format("\\u%04x", (int) c));
                        } else {
                            sb.append(c);
                        }
                }
            }
            sb.append('"');
        }
    }

    static synchronized void emit(Json j) {
        OUT.print(j.toString());
        OUT.print('\n');
        OUT.flush();
    }

    /** A line of a command: with {@code --label L}, it carries {@code "label": L}. */
    static void emit(Args a, Json j) {
        String label = a.str("label", null);
        if (label != null) {
            j.put("label", label);
        }
        emit(j);
    }

    static final boolean TRACE = System.getenv("PEER_TRACE") != null;

    /** With PEER_TRACE set: a stderr line with the time since the JVM started. */
    static void trace(String what) {
        if (TRACE) {
            log(String.format(Locale.ROOT, "%.3fs %s", sinceJvmStart(), what));
        }
    }

    static void log(String s) {
        System.err.println("[peer] " + s);
        System.err.flush();
    }

    // ------------------------------------------------------------------ helpers

    private static final char[] HEX = "0123456789abcdef".toCharArray();

    static String hex(byte[] b) {
        if (b == null) {
            return "";
        }
        char[] out = new char[b.length * 2];
        for (int i = 0; i < b.length; i++) {
            out[2 * i] = HEX[(b[i] >> 4) & 0xf];
            out[2 * i + 1] = HEX[b[i] & 0xf];
        }
        return new String(out);
    }

    static byte[] unhex(String s) {
        if (s.length() % 2 != 0) {
            throw new UsageError("odd-length hex");
        }
        byte[] out = new byte[s.length() / 2];
        for (int i = 0; i < out.length; i++) {
            out[i] = (byte) Integer.parseInt(s.substring(2 * i, 2 * i + 2), 16);
        }
        return out;
    }

    static String hostPort(SocketAddress a) {
        if (a instanceof InetSocketAddress) {
            InetSocketAddress i = (InetSocketAddress) a;
            String host = i.getAddress() != null ? i.getAddress().getHostAddress() : i.getHostString();
            return host + ":" + i.getPort();
        }
        return a == null ? null : a.toString();
    }

    static double cpuSeconds() {
        java.lang.management.OperatingSystemMXBean os = ManagementFactory.getOperatingSystemMXBean();
        if (os instanceof com.sun.management.OperatingSystemMXBean) {
            return ((com.sun.management.OperatingSystemMXBean) os).getProcessCpuTime() / 1e9;
        }
        return Double.NaN;
    }

    static String clientVersion() {
        try {
            return MQVersion.getVersionDesc(MQVersion.CURRENT_VERSION);
        } catch (Throwable t) {
            return "unknown";
        }
    }

    static double sinceJvmStart() {
        return (System.currentTimeMillis() - JVM_START_MS) / 1000.0;
    }

    /** Seconds since the process started (the kernel's start time, as for the other peers). */
    static double sinceProcessStart() {
        long started = ProcessHandle.current().info().startInstant()
                .map(java.time.Instant::toEpochMilli).orElse(JVM_START_MS);
        return (System.currentTimeMillis() - started) / 1000.0;
    }

    /** The process's resident memory now (VmRSS of /proc/self/status), in KiB; -1 if unknown. */
    static long rssKiB() {
        try {
            for (String line : Files.readAllLines(Paths.get("/proc/self/status"))) {
                if (line.startsWith("VmRSS:")) {
                    return Long.parseLong(line.replaceAll("[^0-9]", ""));
                }
            }
        } catch (IOException | NumberFormatException e) {
            // not Linux: unknown
        }
        return -1;
    }

    /** Body of message {@code index}, the same rule as the Go peer (see README). */
    static final class BodySpec {
        final byte[] fixed;
        final int size;

        BodySpec(Args a) throws IOException {
            String h = a.str("body-hex", null);
            String f = a.str("body-file", null);
            String s = a.str("body-size", null);
            if (h != null) {
                fixed = unhex(h);
                size = -1;
            } else if (f != null) {
                fixed = Files.readAllBytes(Paths.get(f));
                size = -1;
            } else if (s != null) {
                fixed = null;
                size = Integer.parseInt(s);
            } else {
                fixed = null;
                size = -1;
            }
        }

        byte[] body(int index) {
            if (fixed != null) {
                return fixed;
            }
            if (size >= 0) {
                byte[] b = new byte[size];
                for (int j = 0; j < size; j++) {
                    b[j] = (byte) ((index + j) & 0xff);
                }
                return b;
            }
            return ("msg-" + index).getBytes(StandardCharsets.UTF_8);
        }
    }

    static Message buildMessage(Args a, BodySpec spec, String topic, int index) {
        Message m = new Message(topic, spec.body(index));
        String tag = a.str("tag", null);
        if (tag != null) {
            m.setTags(tag);
        }
        String keys = a.str("keys", null);
        if (keys != null) {
            m.setKeys(Arrays.asList(keys.split(",")));
        }
        for (String p : a.all("prop")) {
            int eq = p.indexOf('=');
            if (eq <= 0) {
                throw new UsageError("--prop wants k=v: " + p);
            }
            m.putUserProperty(p.substring(0, eq), p.substring(eq + 1));
        }
        int level = a.integer("delay-level", 0);
        if (level > 0) {
            m.setDelayTimeLevel(level);
        }
        long deliverDelay = a.longValue("deliver-delay-ms", -1);
        if (deliverDelay >= 0) {
            MessageAccessor.putProperty(m, "TIMER_DELIVER_MS",
                    Long.toString(System.currentTimeMillis() + deliverDelay));
        }
        return m;
    }

    static Json queueJson(MessageQueue q) {
        Json j = new Json();
        if (q != null) {
            j.put("topic", q.getTopic()).put("brokerName", q.getBrokerName()).put("queueId", q.getQueueId());
        }
        return j;
    }

    static Json sendJson(int index, SendResult r, int bodyLength) {
        Json j = new Json();
        j.put("index", index);
        j.put("msgId", r.getMsgId());
        j.put("offsetMsgId", r.getOffsetMsgId());
        j.put("queue", queueJson(r.getMessageQueue()));
        j.put("queueOffset", r.getQueueOffset());
        j.put("status", r.getSendStatus() == null ? null : r.getSendStatus().name());
        j.put("bodyLength", bodyLength);
        return j;
    }

    static Json messageJson(MessageExt m) {
        Json j = new Json();
        byte[] body = m.getBody();
        j.put("topic", m.getTopic());
        j.put("tags", m.getTags());
        j.put("keys", m.getKeys());
        j.put("msgId", m.getMsgId());
        j.put("offsetMsgId", m instanceof MessageClientExt ? ((MessageClientExt) m).getOffsetMsgId() : null);
        j.put("queueId", m.getQueueId());
        j.put("brokerName", m.getBrokerName());
        j.put("queueOffset", m.getQueueOffset());
        j.put("commitLogOffset", m.getCommitLogOffset());
        j.put("bodyHex", hex(body));
        j.put("bodyLength", body == null ? 0 : body.length);
        j.put("bodyCRC", m.getBodyCRC());
        j.put("flag", m.getFlag());
        j.put("sysFlag", m.getSysFlag());
        j.put("storeSize", m.getStoreSize());
        j.putMap("properties", m.getProperties());
        j.put("reconsumeTimes", m.getReconsumeTimes());
        j.put("bornTimestamp", m.getBornTimestamp());
        j.put("storeTimestamp", m.getStoreTimestamp());
        j.put("bornHost", hostPort(m.getBornHost()));
        j.put("storeHost", hostPort(m.getStoreHost()));
        j.put("transactionId", m.getTransactionId());
        j.put("consumedAt", System.currentTimeMillis());
        return j;
    }

    private static final AtomicInteger GROUP_SEQ = new AtomicInteger();

    static String defaultGroup(String kind) {
        return "interop_java_" + kind + "_" + ProcessHandle.current().pid() + "_" + (System.nanoTime() % 100000)
                + "_" + GROUP_SEQ.incrementAndGet();
    }

    static void configureClient(org.apache.rocketmq.client.ClientConfig c, Args a) {
        c.setNamesrvAddr(a.required("namesrv"));
        String instance = a.str("instance", null);
        if (instance != null) {
            c.setInstanceName(instance);
        }
        // name-server/admin call timeout (5.x ClientConfig; absent from some 4.x releases)
        int apiTimeout = a.integer("api-timeout-ms", 10000);
        try {
            c.getClass().getMethod("setMqClientApiTimeout", int.class).invoke(c, apiTimeout);
        } catch (ReflectiveOperationException e) {
            // older client: keeps its default
        }
        if (a.flag("trace")) {
            // message trace to RMQ_SYS_TRACE_TOPIC (5.x ClientConfig; the 4.x constructors differ)
            try {
                c.getClass().getMethod("setEnableTrace", boolean.class).invoke(c, true);
            } catch (ReflectiveOperationException e) {
                throw new UsageError("--trace needs a 5.x client: " + e);
            }
        }
    }

    // ------------------------------------------------------------------ produce

    static int produce(Args a) throws Exception {
        String topic = a.required("topic");
        int count = a.integer("count", 1);
        String mode = a.str("mode", "plain");
        BodySpec spec = new BodySpec(a);
        if (mode.equals("transaction")) {
            return produceTransaction(a, topic, count, spec);
        }
        DefaultMQProducer p = startProducer(a);
        int failures = 0;
        try {
            switch (mode) {
                case "plain":
                case "delay":
                    for (int i = 0; i < count; i++) {
                        Message m = buildMessage(a, spec, topic, i);
                        emit(a, sendJson(i, p.send(m), m.getBody().length));
                    }
                    break;
                case "oneway":
                    for (int i = 0; i < count; i++) {
                        Message m = buildMessage(a, spec, topic, i);
                        p.sendOneway(m);
                        emit(a, new Json().put("index", i).put("msgId", m.getProperty("UNIQ_KEY"))
                                .put("status", "ONEWAY").put("bodyLength", m.getBody().length));
                    }
                    break;
                case "ordered": {
                    String[] keys = a.str("sharding-key", "key").split(",");
                    MessageQueueSelector selector = (mqs, msg, arg) -> {
                        CRC32 crc = new CRC32();
                        crc.update(((String) arg).getBytes(StandardCharsets.UTF_8));
                        return mqs.get((int) (crc.getValue() % mqs.size()));
                    };
                    for (int i = 0; i < count; i++) {
                        Message m = buildMessage(a, spec, topic, i);
                        String key = keys[i % keys.length];
                        emit(a, sendJson(i, p.send(m, selector, key), m.getBody().length).put("shardingKey", key));
                    }
                    break;
                }
                case "batch": {
                    int batch = a.integer("batch", count);
                    for (int start = 0; start < count; start += batch) {
                        List<Message> msgs = new ArrayList<>();
                        for (int i = start; i < Math.min(count, start + batch); i++) {
                            msgs.add(buildMessage(a, spec, topic, i));
                        }
                        SendResult r = p.send(msgs);
                        String[] ids = r.getMsgId() == null ? new String[0] : r.getMsgId().split(",");
                        String[] offIds = r.getOffsetMsgId() == null ? new String[0] : r.getOffsetMsgId().split(",");
                        for (int k = 0; k < msgs.size(); k++) {
                            Json j = sendJson(start + k, r, msgs.get(k).getBody().length);
                            j.put("msgId", k < ids.length ? ids[k] : null);
                            j.put("offsetMsgId", k < offIds.length ? offIds[k] : null);
                            j.put("queueOffset", r.getQueueOffset() + k);
                            emit(a, j);
                        }
                    }
                    break;
                }
                case "async": {
                    Semaphore window = new Semaphore(a.integer("inflight", 64));
                    Json[] lines = new Json[count];
                    CountDownLatch done = new CountDownLatch(count);
                    AtomicInteger errors = new AtomicInteger();
                    for (int i = 0; i < count; i++) {
                        final int index = i;
                        Message m = buildMessage(a, spec, topic, i);
                        window.acquire();
                        p.send(m, new SendCallback() {
                            @Override
                            public void onSuccess(SendResult r) {
                                lines[index] = sendJson(index, r, m.getBody().length);
                                window.release();
                                done.countDown();
                            }

                            @Override
                            public void onException(Throwable e) {
                                errors.incrementAndGet();
                                lines[index] = new Json().put("index", index).put("error", String.valueOf(e));
                                window.release();
                                done.countDown();
                            }
                        });
                    }
                    done.await();
                    for (Json j : lines) {
                        emit(a, j);
                    }
                    failures = errors.get();
                    break;
                }
                default:
                    throw new UsageError("unknown --mode " + mode);
            }
        } finally {
            if (!inRun) {
                trace("sent; shutting down");
                lingerForTrace(a);
                p.shutdown();
                trace("shut down");
            }
        }
        return failures == 0 ? 0 : 1;
    }

    /** True while a run executes: producers are then shared and left running (see run). */
    static volatile boolean inRun;
    static final Map<String, DefaultMQProducer> SHARED_PRODUCERS = new HashMap<>();

    /**
     * A started producer for the produce command. In a run, the commands with the same
     * --group, --send-timeout-ms and --instance share one, which is never shut down: starting and
     * stopping a client per command costs seconds, and the run's end stops the JVM anyway.
     */
    static DefaultMQProducer startProducer(Args a) throws Exception {
        String key = a.str("group", "") + "|" + a.str("send-timeout-ms", "") + "|" + a.str("instance", "")
                + "|" + a.flag("trace");
        synchronized (SHARED_PRODUCERS) {
            DefaultMQProducer p = inRun ? SHARED_PRODUCERS.get(key) : null;
            if (p != null) {
                return p;
            }
            p = new DefaultMQProducer(a.str("group", defaultGroup("producer")));
            configureClient(p, a);
            p.setSendMsgTimeout(a.integer("send-timeout-ms", 30000));
            trace("producer starting");
            p.start();
            trace("producer started");
            TraceWatch.attach(p, a);
            if (inRun) {
                SHARED_PRODUCERS.put(key, p);
            }
            return p;
        }
    }

    static int produceTransaction(Args a, String topic, int count, BodySpec spec) throws Exception {
        String state = a.str("tx-state", "commit");
        LocalTransactionState local;
        LocalTransactionState onCheck;
        switch (state) {
            case "commit":
                local = LocalTransactionState.COMMIT_MESSAGE;
                onCheck = LocalTransactionState.COMMIT_MESSAGE;
                break;
            case "rollback":
                local = LocalTransactionState.ROLLBACK_MESSAGE;
                onCheck = LocalTransactionState.ROLLBACK_MESSAGE;
                break;
            case "unknown-then-commit":
                local = LocalTransactionState.UNKNOW;
                onCheck = LocalTransactionState.COMMIT_MESSAGE;
                break;
            case "unknown-then-rollback":
                local = LocalTransactionState.UNKNOW;
                onCheck = LocalTransactionState.ROLLBACK_MESSAGE;
                break;
            default:
                throw new UsageError("unknown --tx-state " + state);
        }
        Map<String, AtomicInteger> checks = new ConcurrentHashMap<>();
        Map<String, String> checkTxIds = new ConcurrentHashMap<>();
        AtomicLong lastCheck = new AtomicLong();
        TransactionMQProducer p = new TransactionMQProducer(a.str("group", defaultGroup("tx")));
        configureClient(p, a);
        p.setSendMsgTimeout(a.integer("send-timeout-ms", 30000));
        p.setTransactionListener(new TransactionListener() {
            @Override
            public LocalTransactionState executeLocalTransaction(Message msg, Object arg) {
                return local;
            }

            @Override
            public LocalTransactionState checkLocalTransaction(MessageExt msg) {
                String id = msg.getProperty("UNIQ_KEY");
                if (id == null) {
                    id = msg.getMsgId();
                }
                checks.computeIfAbsent(id, k -> new AtomicInteger()).incrementAndGet();
                checkTxIds.put(id, String.valueOf(msg.getTransactionId()));
                lastCheck.set(System.nanoTime());
                return onCheck;
            }
        });
        p.start();
        List<Json> lines = new ArrayList<>();
        List<String> ids = new ArrayList<>();
        int rc = 0;
        try {
            for (int i = 0; i < count; i++) {
                Message m = buildMessage(a, spec, topic, i);
                TransactionSendResult r = p.sendMessageInTransaction(m, null);
                Json j = sendJson(i, r, m.getBody().length);
                j.put("transactionId", r.getTransactionId());
                j.put("localState", r.getLocalTransactionState() == null ? null : r.getLocalTransactionState().name());
                lines.add(j);
                ids.add(r.getMsgId());
            }
            boolean waitChecks = local == LocalTransactionState.UNKNOW;
            if (waitChecks) {
                long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(a.integer("timeout-sec", 60));
                while (System.nanoTime() < deadline && !ids.stream().allMatch(checks::containsKey)) {
                    Thread.sleep(50);
                }
                if (!ids.stream().allMatch(checks::containsKey)) {
                    log("timed out waiting for transaction check-backs");
                    rc = 2;
                }
                // The check answer is sent (one-way) after the listener returns: let it leave.
                // --linger-ms keeps answering further check-backs that long.
                Thread.sleep(a.integer("linger-ms", 1000));
            }
            for (int i = 0; i < lines.size(); i++) {
                Json j = lines.get(i);
                AtomicInteger n = checks.get(ids.get(i));
                j.put("checkTimes", n == null ? 0 : n.get());
                j.put("checkState", n == null ? null : onCheck.name());
                emit(a, j);
            }
        } finally {
            if (!inRun) {
                p.shutdown();
            }
        }
        return rc;
    }

    // ------------------------------------------------------------------ consume

    static DefaultMQPushConsumer newConsumer(Args a, String topic, String group) throws Exception {
        DefaultMQPushConsumer c = new DefaultMQPushConsumer(group);
        configureClient(c, a);
        String from = a.str("from", "first");
        switch (from) {
            case "first":
                c.setConsumeFromWhere(ConsumeFromWhere.CONSUME_FROM_FIRST_OFFSET);
                break;
            case "last":
                c.setConsumeFromWhere(ConsumeFromWhere.CONSUME_FROM_LAST_OFFSET);
                break;
            default:
                throw new UsageError("--from first|last");
        }
        String expr = a.str("expression", "*");
        if (a.flag("sql")) {
            c.subscribe(topic, MessageSelector.bySql(expr));
        } else {
            c.subscribe(topic, expr);
        }
        if (a.flag("broadcast")) {
            setMessageModel(c, "BROADCASTING");
        }
        int pullBatch = a.integer("pull-batch", 0);
        if (pullBatch > 0) {
            c.setPullBatchSize(pullBatch);
        }
        int threads = a.integer("threads", 0);
        if (threads > 0) {
            c.setConsumeThreadMin(threads);
            c.setConsumeThreadMax(threads);
        }
        int maxReconsume = a.integer("max-reconsume-times", -2);
        if (maxReconsume != -2) {
            c.setMaxReconsumeTimes(maxReconsume);
        }
        return c;
    }

    /** MessageModel moved packages between 4.x and 5.x: set it by name. */
    static void setMessageModel(DefaultMQPushConsumer c, String model) throws Exception {
        for (Method m : c.getClass().getMethods()) {
            if (m.getName().equals("setMessageModel") && m.getParameterCount() == 1) {
                Class<?> type = m.getParameterTypes()[0];
                @SuppressWarnings({"unchecked", "rawtypes"})
                Object value = Enum.valueOf((Class<? extends Enum>) type.asSubclass(Enum.class), model);
                m.invoke(c, value);
                return;
            }
        }
        throw new IllegalStateException("no setMessageModel");
    }

    static void signalReady(Args a) throws IOException {
        log("READY");
        String f = a.str("ready-file", null);
        if (f != null) {
            Files.write(Paths.get(f), "ready\n".getBytes(StandardCharsets.UTF_8));
        }
    }

    /**
     * Waits until {@code count} deliveries were counted ({@code count > 0}), the file named by
     * {@code --stop-file} exists, or {@code timeout} seconds have passed. True unless it timed out
     * with {@code count > 0}.
     */
    /**
     * With {@code --trace}: the client's trace messages, counted by a send hook on its trace
     * producer, so that the peer can let them leave before it shuts down. The client's trace
     * dispatcher sends a few records only every 5 s, and its shutdown hands the last batch to
     * an asynchronous send and closes the trace producer right after: on a loaded machine the
     * records were lost. The dispatcher is reached by reflection (the peer also builds against
     * 4.x clients).
     */
    static final class TraceWatch implements org.apache.rocketmq.client.hook.SendMessageHook {
        static final TraceWatch INSTANCE = new TraceWatch();
        final AtomicInteger started = new AtomicInteger();
        final AtomicInteger sent = new AtomicInteger();
        final AtomicInteger failed = new AtomicInteger();
        volatile long lastChange = System.nanoTime();

        static void attach(Object client, Args a) {
            if (!a.flag("trace")) {
                return;
            }
            try {
                Object dispatcher = client.getClass().getMethod("getTraceDispatcher").invoke(client);
                DefaultMQProducer traceProducer =
                        (DefaultMQProducer) dispatcher.getClass().getMethod("getTraceProducer").invoke(dispatcher);
                traceProducer.getDefaultMQProducerImpl().registerSendMessageHook(INSTANCE);
            } catch (ReflectiveOperationException | ClassCastException e) {
                throw new UsageError("--trace: cannot watch the client's trace producer: " + e);
            }
        }

        @Override
        public String hookName() {
            return "peer-trace-watch";
        }

        @Override
        public void sendMessageBefore(org.apache.rocketmq.client.hook.SendMessageContext context) {
            started.incrementAndGet();
            lastChange = System.nanoTime();
        }

        @Override
        public void sendMessageAfter(org.apache.rocketmq.client.hook.SendMessageContext context) {
            // An asynchronous send calls this twice: once as it is handed over (neither result
            // nor exception yet), once with its outcome.
            if (context.getSendResult() != null) {
                sent.incrementAndGet();
            } else if (context.getException() != null) {
                failed.incrementAndGet();
            }
            lastChange = System.nanoTime();
        }
    }

    /**
     * With {@code --trace}: wait until the client's trace messages have gone (at least one
     * sent, none in flight, nothing new for half a second), at most {@code --trace-linger-ms}
     * (default 30000); then print {@code {"traceSends": n, "traceSent": n, "traceFailed": n}}.
     */
    static void lingerForTrace(Args a) throws InterruptedException {
        if (!a.flag("trace")) {
            return;
        }
        TraceWatch w = TraceWatch.INSTANCE;
        long deadline = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(a.integer("trace-linger-ms", 30000));
        while (System.nanoTime() < deadline) {
            int finished = w.sent.get() + w.failed.get();
            boolean quiet = System.nanoTime() - w.lastChange > TimeUnit.MILLISECONDS.toNanos(500);
            if (w.sent.get() > 0 && finished == w.started.get() && quiet) {
                break;
            }
            Thread.sleep(50);
        }
        emit(a, new Json().put("traceSends", w.started.get()).put("traceSent", w.sent.get())
                .put("traceFailed", w.failed.get()));
    }

    static boolean awaitEnd(Args a, CountDownLatch done, int count, int timeout) throws InterruptedException {
        String stop = a.str("stop-file", null);
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(timeout);
        while (true) {
            if (stop != null && Files.exists(Paths.get(stop))) {
                return true;
            }
            long left = deadline - System.nanoTime();
            if (left <= 0) {
                return count <= 0;
            }
            long step = Math.min(left, TimeUnit.MILLISECONDS.toNanos(stop == null ? 1000 : 100));
            if (count > 0 && done.await(step, TimeUnit.NANOSECONDS)) {
                return true;
            }
            if (count <= 0) {
                TimeUnit.NANOSECONDS.sleep(step);
            }
        }
    }

    static int consume(Args a) throws Exception {
        String topic = a.required("topic");
        String group = a.required("group");
        int count = a.integer("count", 1);
        int timeout = a.integer("timeout-sec", 60);
        int failTimes = a.integer("fail-times", 0);
        CountDownLatch done = new CountDownLatch(Math.max(count, 0));
        DefaultMQPushConsumer c = newConsumer(a, topic, group);
        if (a.flag("pop")) {
            usePop(c, a, topic, group);
        }
        if (a.flag("orderly")) {
            c.registerMessageListener((MessageListenerOrderly) (msgs, ctx) -> {
                for (MessageExt m : msgs) {
                    boolean fail = m.getReconsumeTimes() < failTimes;
                    emit(a, messageJson(m).put("consumeResult", fail ? "SUSPEND_CURRENT_QUEUE_A_MOMENT" : "SUCCESS"));
                    if (fail) {
                        return ConsumeOrderlyStatus.SUSPEND_CURRENT_QUEUE_A_MOMENT;
                    }
                }
                for (int i = 0; i < msgs.size(); i++) {
                    done.countDown();
                }
                return ConsumeOrderlyStatus.SUCCESS;
            });
            if (failTimes > 0) {
                c.setSuspendCurrentQueueTimeMillis(200);
            }
        } else {
            c.registerMessageListener((MessageListenerConcurrently) (msgs, ctx) -> {
                boolean fail = false;
                for (MessageExt m : msgs) {
                    fail |= m.getReconsumeTimes() < failTimes;
                }
                for (MessageExt m : msgs) {
                    trace("message");
                    emit(a, messageJson(m).put("consumeResult", fail ? "RECONSUME_LATER" : "SUCCESS"));
                }
                if (fail) {
                    return ConsumeConcurrentlyStatus.RECONSUME_LATER;
                }
                for (int i = 0; i < msgs.size(); i++) {
                    done.countDown();
                }
                return ConsumeConcurrentlyStatus.CONSUME_SUCCESS;
            });
        }
        trace("consumer starting");
        c.start();
        trace("consumer started");
        TraceWatch.attach(c, a);
        signalReady(a);
        boolean finished = awaitEnd(a, done, count, timeout);
        trace("received all; shutting down");
        lingerForTrace(a);
        c.shutdown();
        trace("shut down");
        if (!finished) {
            log("timed out with " + (count - done.getCount()) + " of " + count + " messages");
            return 2;
        }
        return 0;
    }

    // ------------------------------------------------------------------ request / reply

    static int reply(Args a) throws Exception {
        String topic = a.required("topic");
        String group = a.required("group");
        int count = a.integer("count", 1);
        int timeout = a.integer("timeout-sec", 60);
        DefaultMQProducer p = new DefaultMQProducer(a.str("producer-group", defaultGroup("replier")));
        configureClient(p, a);
        p.start();
        CountDownLatch done = new CountDownLatch(Math.max(count, 0));
        DefaultMQPushConsumer c = newConsumer(a, topic, group);
        byte[] prefix = a.str("reply-prefix", "reply:").getBytes(StandardCharsets.UTF_8);
        c.registerMessageListener((MessageListenerConcurrently) (msgs, ctx) -> {
            for (MessageExt m : msgs) {
                byte[] body = m.getBody() == null ? new byte[0] : m.getBody();
                byte[] out = Arrays.copyOf(prefix, prefix.length + body.length);
                System.arraycopy(body, 0, out, prefix.length, body.length);
                Json j = messageJson(m);
                try {
                    Message replyMsg = MessageUtil.createReplyMessage(m, out);
                    SendResult r = p.send(replyMsg, 30000);
                    j.put("replyStatus", r.getSendStatus().name()).put("replyMsgId", r.getMsgId())
                            .put("replyTopic", replyMsg.getTopic());
                } catch (Exception e) {
                    j.put("replyError", String.valueOf(e));
                }
                emit(a, j);
                done.countDown();
            }
            return ConsumeConcurrentlyStatus.CONSUME_SUCCESS;
        });
        trace("consumer starting");
        c.start();
        trace("consumer started");
        signalReady(a);
        boolean finished = awaitEnd(a, done, count, timeout);
        c.shutdown();
        p.shutdown();
        return finished ? 0 : 2;
    }

    static int request(Args a) throws Exception {
        String topic = a.required("topic");
        int count = a.integer("count", 1);
        long timeoutMs = a.longValue("timeout-ms", 10000);
        BodySpec spec = new BodySpec(a);
        DefaultMQProducer p = new DefaultMQProducer(a.str("group", defaultGroup("requester")));
        configureClient(p, a);
        p.start();
        int rc = 0;
        try {
            for (int i = 0; i < count; i++) {
                Message m = buildMessage(a, spec, topic, i);
                long t0 = System.nanoTime();
                Json j = new Json().put("index", i);
                try {
                    Message r = p.request(m, timeoutMs);
                    double ms = (System.nanoTime() - t0) / 1e6;
                    byte[] body = r.getBody();
                    j.put("requestMsgId", m.getProperty("UNIQ_KEY"));
                    j.put("topic", r.getTopic());
                    j.put("tags", r.getTags());
                    j.put("keys", r.getKeys());
                    j.put("bodyHex", hex(body));
                    j.put("bodyLength", body == null ? 0 : body.length);
                    j.putMap("properties", r.getProperties());
                    j.put("correlationId", r.getProperty("CORRELATION_ID"));
                    j.put("rttMs", ms);
                } catch (Exception e) {
                    j.put("error", String.valueOf(e));
                    rc = e.getClass().getSimpleName().contains("Timeout") ? 2 : 1;
                }
                emit(a, j);
            }
        } finally {
            if (!inRun) {
                p.shutdown();
            }
        }
        return rc;
    }

    // ------------------------------------------------------------------ benchmarks

    static double percentile(long[] sortedNanos, double q) {
        if (sortedNanos.length == 0) {
            return Double.NaN;
        }
        int idx = (int) Math.ceil(q * sortedNanos.length) - 1;
        idx = Math.max(0, Math.min(sortedNanos.length - 1, idx));
        return sortedNanos[idx] / 1e6;
    }

    static int benchProduce(Args a) throws Exception {
        String topic = a.required("topic");
        int count = a.integer("count", 10000);
        int size = a.integer("size", 1024);
        String mode = a.str("mode", "sync");
        int inflight = a.integer("inflight", 16);
        int batch = a.integer("batch", 32);
        int warmup = a.integer("warmup", 0);
        // --mode spread: sequential sends over --topics topics <topic>_0.. for --seconds
        int seconds = a.integer("seconds", 60);
        String[] topics = new String[mode.equals("spread") ? a.integer("topics", 1) : 1];
        for (int t = 0; t < topics.length; t++) {
            topics[t] = mode.equals("spread") ? topic + "_" + t : topic;
        }
        long startEpochMs = 0;
        byte[] body = new byte[size];
        if (a.flag("random")) {
            // incompressible: the same bytes in every peer's run (a seeded generator)
            new java.util.Random(size).nextBytes(body);
        } else {
            for (int j = 0; j < size; j++) {
                body[j] = (byte) ('a' + j % 26);
            }
        }
        DefaultMQProducer p = new DefaultMQProducer(a.str("group", defaultGroup("bench")));
        configureClient(p, a);
        p.setSendMsgTimeout(a.integer("send-timeout-ms", 30000));
        p.start();
        double startup = sinceJvmStart();
        // warm-up (also resolves the route): not measured
        double firstAck = Double.NaN;
        for (int i = 0; i < Math.max(1, warmup); i++) {
            p.send(new Message(topics[i % topics.length], body));
            if (i == 0) {
                firstAck = sinceProcessStart();
            }
        }
        AtomicInteger errors = new AtomicInteger();
        int ops = mode.equals("batch") ? (count + batch - 1) / batch : mode.equals("spread") ? 0 : count;
        long[] lat = new long[ops];
        double cpu0 = cpuSeconds();
        long t0 = System.nanoTime();
        switch (mode) {
            case "spread": {
                startEpochMs = System.currentTimeMillis();
                long deadline = t0 + seconds * 1_000_000_000L;
                int sent = 0;
                while (System.nanoTime() < deadline) {
                    try {
                        p.send(new Message(topics[sent % topics.length], body));
                    } catch (Exception e) {
                        errors.incrementAndGet();
                    }
                    sent++;
                }
                count = sent;
                break;
            }
            case "sync":
                for (int i = 0; i < count; i++) {
                    long s = System.nanoTime();
                    try {
                        p.send(new Message(topic, body));
                    } catch (Exception e) {
                        errors.incrementAndGet();
                    }
                    lat[i] = System.nanoTime() - s;
                }
                break;
            case "oneway":
                for (int i = 0; i < count; i++) {
                    long s = System.nanoTime();
                    p.sendOneway(new Message(topic, body));
                    lat[i] = System.nanoTime() - s;
                }
                break;
            case "batch":
                for (int op = 0; op < ops; op++) {
                    int n = Math.min(batch, count - op * batch);
                    List<Message> msgs = new ArrayList<>(n);
                    for (int k = 0; k < n; k++) {
                        msgs.add(new Message(topic, body));
                    }
                    long s = System.nanoTime();
                    try {
                        p.send(msgs);
                    } catch (Exception e) {
                        errors.incrementAndGet();
                    }
                    lat[op] = System.nanoTime() - s;
                }
                break;
            case "async": {
                Semaphore window = new Semaphore(inflight);
                CountDownLatch done = new CountDownLatch(count);
                for (int i = 0; i < count; i++) {
                    final int idx = i;
                    window.acquire();
                    final long s = System.nanoTime();
                    SendCallback cb = new SendCallback() {
                        @Override
                        public void onSuccess(SendResult r) {
                            lat[idx] = System.nanoTime() - s;
                            window.release();
                            done.countDown();
                        }

                        @Override
                        public void onException(Throwable e) {
                            lat[idx] = System.nanoTime() - s;
                            errors.incrementAndGet();
                            window.release();
                            done.countDown();
                        }
                    };
                    try {
                        p.send(new Message(topic, body), cb);
                    } catch (Exception e) {
                        cb.onException(e);
                    }
                }
                done.await();
                break;
            }
            default:
                throw new UsageError("unknown bench --mode " + mode);
        }
        double elapsed = (System.nanoTime() - t0) / 1e9;
        double cpu = cpuSeconds() - cpu0;
        long rss = rssKiB();
        p.shutdown();
        Arrays.sort(lat);
        double sum = 0;
        for (long l : lat) {
            sum += l;
        }
        Json j = new Json().put("client", "java").put("clientVersion", clientVersion()).put("op", "bench-produce")
                .put("mode", mode).put("count", count).put("size", size);
        if (mode.equals("async")) {
            j.put("inflight", inflight);
        }
        if (mode.equals("batch")) {
            j.put("batch", batch);
        }
        if (mode.equals("spread")) {
            j.put("topics", topics.length).put("startEpochMs", startEpochMs)
                    .put("endEpochMs", startEpochMs + (long) (elapsed * 1000));
        }
        j.put("warmup", warmup).put("elapsedSec", elapsed).put("msgsPerSec", count / elapsed)
                .put("p50Ms", percentile(lat, 0.50)).put("p99Ms", percentile(lat, 0.99))
                .put("meanMs", ops == 0 ? Double.NaN : sum / ops / 1e6)
                .put("cpuSec", cpu).put("cpuUsPerMsg", cpu * 1e6 / count)
                .put("processCpuSec", cpuSeconds()).put("startupSec", startup)
                .put("firstAckSec", firstAck).put("rssKiB", rss)
                .put("errors", errors.get());
        emit(j);
        return errors.get() == 0 ? 0 : 1;
    }

    static int benchConsume(Args a) throws Exception {
        String topic = a.required("topic");
        String group = a.required("group");
        int count = a.integer("count", 10000);
        int timeout = a.integer("timeout-sec", 300);
        CountDownLatch done = new CountDownLatch(count);
        AtomicLong firstAt = new AtomicLong();
        AtomicLong firstAtEpochMs = new AtomicLong();
        AtomicLong lastAtEpochMs = new AtomicLong();
        AtomicReference<Double> cpuAtFirst = new AtomicReference<>();
        AtomicLong bytes = new AtomicLong();
        DefaultMQPushConsumer c = newConsumer(a, topic, group);
        int consumeBatch = a.integer("consume-batch", 0);
        if (consumeBatch > 0) {
            c.setConsumeMessageBatchMaxSize(consumeBatch);
        }
        // --pop: RocketMQ 5.x POP. A message not acked in its invisible time comes again, so
        // messages are counted once each (by message id) and the others as duplicates.
        boolean pop = a.flag("pop");
        java.util.Set<String> seen = pop ? ConcurrentHashMap.newKeySet() : null;
        AtomicLong duplicates = new AtomicLong();
        if (pop) {
            usePop(c, a, topic, group);
        }
        c.registerMessageListener((MessageListenerConcurrently) (msgs, ctx) -> {
            if (firstAt.get() == 0 && firstAt.compareAndSet(0, System.nanoTime())) {
                cpuAtFirst.set(cpuSeconds());
                firstAtEpochMs.compareAndSet(0, System.currentTimeMillis());
            }
            lastAtEpochMs.accumulateAndGet(System.currentTimeMillis(), Math::max);
            for (MessageExt m : msgs) {
                if (seen != null && !seen.add(m.getMsgId())) {
                    duplicates.incrementAndGet();
                    continue;
                }
                bytes.addAndGet(m.getBody() == null ? 0 : m.getBody().length);
                done.countDown();
            }
            return ConsumeConcurrentlyStatus.CONSUME_SUCCESS;
        });
        double cpu0 = cpuSeconds();
        long t0 = System.nanoTime();
        c.start();
        double startup = sinceJvmStart();
        // --stop-file ends it too (a scale-out run: several processes share the backlog).
        boolean finished = awaitEnd(a, done, count, timeout) && done.getCount() == 0
                || a.str("stop-file", null) != null;
        long t1 = System.nanoTime();
        double cpu1 = cpuSeconds();
        long received = count - done.getCount();
        long rss = rssKiB();
        c.shutdown();
        double elapsed = (t1 - t0) / 1e9;
        double fromFirst = firstAt.get() == 0 ? Double.NaN : (t1 - firstAt.get()) / 1e9;
        Json j = new Json().put("client", "java").put("clientVersion", clientVersion()).put("op", "bench-consume")
                .put("count", count).put("received", received).put("bytes", bytes.get())
                .put("elapsedSec", elapsed).put("msgsPerSec", received / elapsed)
                .put("elapsedFromFirstSec", fromFirst).put("msgsPerSecFromFirst", received / fromFirst)
                .put("cpuSec", cpu1 - cpu0).put("cpuUsPerMsg", (cpu1 - cpu0) * 1e6 / Math.max(1, received))
                .put("cpuFromFirstUsPerMsg", cpuAtFirst.get() == null ? Double.NaN
                        : (cpu1 - cpuAtFirst.get()) * 1e6 / Math.max(1, received))
                .put("processCpuSec", cpuSeconds()).put("startupSec", startup).put("rssKiB", rss)
                .put("firstAtEpochMs", firstAtEpochMs.get() == 0 ? Double.NaN : firstAtEpochMs.get())
                .put("lastAtEpochMs", lastAtEpochMs.get() == 0 ? Double.NaN : lastAtEpochMs.get())
                .put("timedOut", !finished);
        if (pop) {
            j.put("pop", true).put("duplicates", duplicates.get());
        }
        emit(j);
        return finished ? 0 : 2;
    }

    /**
     * Makes {@code c} a POP consumer (rocketmq-client 5.x): the group's request mode is set to
     * POP on every master of {@code topic} (as {@code mqadmin setConsumeMode} does, every
     * consumer popping from all queues), and the consumer asks the brokers for its queues
     * instead of rebalancing itself. By reflection: 4.x clients have neither, and route types
     * moved between packages.
     */
    static void usePop(DefaultMQPushConsumer c, Args a, String topic, String group) throws Exception {
        Class<?> modeType;
        try {
            c.getClass().getMethod("setClientRebalance", boolean.class).invoke(c, false);
            modeType = Class.forName("org.apache.rocketmq.common.message.MessageRequestMode");
        } catch (ReflectiveOperationException e) {
            throw new UsageError("--pop needs rocketmq-client 5.x (" + e + ")");
        }
        @SuppressWarnings({"unchecked", "rawtypes"})
        Object popMode = Enum.valueOf((Class<? extends Enum>) modeType.asSubclass(Enum.class), "POP");
        long timeoutMs = a.integer("api-timeout-ms", 10000);
        DefaultMQProducer helper = new DefaultMQProducer(defaultGroup("popmode"));
        configureClient(helper, a);
        helper.start();
        try {
            Object impl = helper.getDefaultMQProducerImpl();
            Object factory = impl.getClass().getMethod("getMqClientFactory").invoke(impl);
            Object api = factory.getClass().getMethod("getMQClientAPIImpl").invoke(factory);
            Object route = api.getClass().getMethod("getTopicRouteInfoFromNameServer", String.class, long.class)
                    .invoke(api, topic, timeoutMs);
            Method setMode = api.getClass().getMethod("setMessageRequestMode", String.class, String.class,
                    String.class, modeType, int.class, long.class);
            int masters = 0;
            for (Object broker : (List<?>) route.getClass().getMethod("getBrokerDatas").invoke(route)) {
                Map<?, ?> addrs = (Map<?, ?>) broker.getClass().getMethod("getBrokerAddrs").invoke(broker);
                Object master = addrs.get(0L);
                if (master != null) {
                    setMode.invoke(api, master.toString(), topic, group, popMode, 0, timeoutMs);
                    masters++;
                }
            }
            if (masters == 0) {
                throw new IllegalStateException("no master serves " + topic);
            }
        } finally {
            helper.shutdown();
        }
    }

    // ------------------------------------------------------------------ main

    static int version(Args a) {
        emit(new Json().put("client", "java").put("clientVersion", clientVersion())
                .put("startupSec", sinceJvmStart()).put("processCpuSec", cpuSeconds()));
        return 0;
    }

    /**
     * Loads the classes a real run loads, with no broker (connections are refused), so that
     * {@code java -XX:ArchiveClassesAtExit=peer.jsa -jar peer.jar warm} writes a class-data
     * archive that cuts the JVM's start-up CPU in later runs.
     */
    static int warm(Args a) throws Exception {
        String ns = a.str("namesrv", "127.0.0.1:9");
        Args fake = new Args(new String[] {"warm", "--namesrv", ns, "--api-timeout-ms", "300",
            "--prop", "k=v", "--keys", "a,b", "--tag", "t"});
        BodySpec spec = new BodySpec(fake);
        DefaultMQProducer p = new DefaultMQProducer("interop_warm");
        configureClient(p, fake);
        p.setSendMsgTimeout(300);
        p.start();
        Message m = buildMessage(fake, spec, "interop_warm", 0);
        try {
            p.send(m);
        } catch (Exception e) {
            // expected: nothing listens
        }
        try {
            p.send(buildMessage(fake, spec, "interop_warm", 1), new SendCallback() {
                @Override
                public void onSuccess(SendResult r) {
                }

                @Override
                public void onException(Throwable e) {
                }
            });
        } catch (Exception e) {
            // expected
        }
        p.shutdown();
        TransactionMQProducer tx = new TransactionMQProducer("interop_warm_tx");
        configureClient(tx, fake);
        tx.shutdown();
        DefaultMQPushConsumer c = new DefaultMQPushConsumer("interop_warm");
        configureClient(c, fake);
        c.subscribe("interop_warm", "*");
        c.registerMessageListener((MessageListenerConcurrently) (msgs, ctx) ->
                ConsumeConcurrentlyStatus.CONSUME_SUCCESS);
        try {
            c.start();
            Thread.sleep(300);
        } catch (Exception e) {
            // 5.x fails start() when the route cannot be fetched: expected
        }
        c.shutdown();
        MessageClientExt ext = new MessageClientExt();
        ext.setTopic("interop_warm");
        ext.setBody(new byte[] {1, 2});
        ext.setBornHost(new InetSocketAddress("127.0.0.1", 1));
        ext.setStoreHost(new InetSocketAddress("127.0.0.1", 2));
        ext.putUserProperty("k", "v");
        String line = messageJson(ext).toString();
        try {
            MessageUtil.createReplyMessage(ext, new byte[0]);
        } catch (Exception e) {
            // no CLUSTER property: expected
        }
        log("warm: " + line.length() + " bytes of JSON, client " + clientVersion());
        return 0;
    }

    static int dispatch(Args a) throws Exception {
        switch (a.command) {
            case "produce":
                return produce(a);
            case "consume":
                return consume(a);
            case "reply":
                return reply(a);
            case "request":
                return request(a);
            case "bench-produce":
                return benchProduce(a);
            case "bench-consume":
                return benchConsume(a);
            case "version":
                return version(a);
            case "warm":
                return warm(a);
            default:
                throw new UsageError("unknown command " + a.command);
        }
    }

    // ------------------------------------------------------------------ run

    /**
     * Runs the commands listed in {@code --file} in this one JVM (see README): one command per
     * line, its arguments separated by tabs, UTF-8; blank lines and lines starting with '#' are
     * skipped. A line whose first field is '&' runs on its own thread; the others run one after
     * another, in file order. The run's other options go before each command's own (which
     * therefore win). After each command, a line {"event":"step",...} gives its exit code and
     * error. Exit code: the highest of the commands'.
     */
    static int run(String[] argv) throws Exception {
        String file = null;
        List<String> common = new ArrayList<>();
        for (int i = 1; i < argv.length; i++) {
            if (argv[i].equals("--file") && i + 1 < argv.length) {
                file = argv[++i];
            } else if (argv[i].startsWith("--file=")) {
                file = argv[i].substring("--file=".length());
            } else {
                common.add(argv[i]);
            }
        }
        if (file == null) {
            throw new UsageError("--file is required for run");
        }
        inRun = true;
        AtomicInteger worst = new AtomicInteger();
        List<Thread> background = new ArrayList<>();
        int step = 0;
        for (String line : Files.readAllLines(Paths.get(file), StandardCharsets.UTF_8)) {
            if (line.isBlank() || line.startsWith("#")) {
                continue;
            }
            List<String> fields = new ArrayList<>(Arrays.asList(line.split("\t", -1)));
            boolean inBackground = fields.get(0).equals("&");
            if (inBackground) {
                fields.remove(0);
            }
            if (fields.isEmpty() || fields.get(0).equals("run")) {
                throw new UsageError("run: bad line: " + line);
            }
            List<String> stepArgv = new ArrayList<>();
            stepArgv.add(fields.get(0));
            stepArgv.addAll(common);
            stepArgv.addAll(fields.subList(1, fields.size()));
            final int index = step++;
            Runnable body = () -> runStep(index, stepArgv.toArray(new String[0]), inBackground, worst);
            if (inBackground) {
                Thread t = new Thread(body, "run-step-" + index);
                t.start();
                background.add(t);
            } else {
                body.run();
            }
        }
        for (Thread t : background) {
            t.join();
        }
        return worst.get();
    }

    static void runStep(int index, String[] argv, boolean inBackground, AtomicInteger worst) {
        String label = null;
        String error = null;
        int rc;
        try {
            Args a = new Args(argv);
            label = a.str("label", null);
            rc = dispatch(a);
        } catch (UsageError e) {
            rc = 3;
            error = "usage: " + e.getMessage();
        } catch (Throwable t) {
            rc = 1;
            error = String.valueOf(t);
            log("step " + index + " (" + argv[0] + ") failed: " + t);
        }
        emit(new Json().put("event", "step").put("step", index).put("command", argv[0]).put("label", label)
                .put("background", inBackground).put("rc", rc).put("error", error));
        worst.accumulateAndGet(rc, Math::max);
    }

    public static void main(String[] argv) {
        trace("main");
        // Client log files: 4.x reads rocketmq.client.logRoot/logLevel, 5.x rocketmq.log.root/level.
        String logRoot = System.getProperty("rocketmq.client.logRoot",
                System.getProperty("rocketmq.log.root",
                        Paths.get(System.getProperty("java.io.tmpdir"), "rocketmq-interop-java-logs").toString()));
        System.setProperty("rocketmq.client.logRoot", logRoot);
        System.setProperty("rocketmq.log.root", logRoot);
        String logLevel = System.getProperty("rocketmq.log.level", "warn");
        System.setProperty("rocketmq.log.level", logLevel);
        System.setProperty("rocketmq.client.logLevel", logLevel.toUpperCase(Locale.ROOT));
        int rc;
        try {
            if (argv.length > 0 && argv[0].equals("run")) {
                rc = run(argv);
            } else {
                rc = dispatch(new Args(argv));
            }
        } catch (UsageError e) {
            System.err.println("usage: " + e.getMessage());
            System.err.println("commands: produce consume reply request run bench-produce bench-consume version"
                    + " (see interop/README.md)");
            rc = 3;
        } catch (Throwable t) {
            t.printStackTrace();
            rc = 1;
        }
        OUT.flush();
        System.err.flush();
        // Client threads (Netty, schedulers) may linger after shutdown(): do not wait for them.
        Runtime.getRuntime().halt(rc);
    }
}
