// Command peer drives github.com/apache/rocketmq-client-go/v2 for interop tests and
// benchmarks. It has the same command line as the Java peer (interop/java); see
// interop/README.md. stdout carries only JSON lines; diagnostics go to stderr.
// Exit codes: 0 done, 1 error, 2 timed out, 3 usage error.
package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"math/rand"
	"os"
	"os/signal"
	"runtime/debug"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	rocketmq "github.com/apache/rocketmq-client-go/v2"
	"github.com/apache/rocketmq-client-go/v2/consumer"
	"github.com/apache/rocketmq-client-go/v2/primitive"
	"github.com/apache/rocketmq-client-go/v2/producer"
	"github.com/apache/rocketmq-client-go/v2/rlog"
)

const modulePath = "github.com/apache/rocketmq-client-go/v2"

var processStart = time.Now()

// ---------------------------------------------------------------- arguments

type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

type args struct {
	command string
	values  map[string][]string
	flags   map[string]bool
}

var flagNames = map[string]bool{"sql": true, "orderly": true, "broadcast": true, "random": true}

func parseArgs(argv []string) (*args, error) {
	if len(argv) == 0 {
		return nil, usageError{"no command"}
	}
	a := &args{command: argv[0], values: map[string][]string{}, flags: map[string]bool{}}
	for i := 1; i < len(argv); i++ {
		s := argv[i]
		if !strings.HasPrefix(s, "--") {
			return nil, usageError{"unexpected argument: " + s}
		}
		name := s[2:]
		value := ""
		hasValue := false
		if eq := strings.IndexByte(name, '='); eq >= 0 && !strings.HasPrefix(name, "prop") {
			value, name, hasValue = name[eq+1:], name[:eq], true
		}
		if flagNames[name] {
			a.flags[name] = true
			continue
		}
		if !hasValue {
			if i+1 >= len(argv) {
				return nil, usageError{"option --" + name + " needs a value"}
			}
			i++
			value = argv[i]
		}
		a.values[name] = append(a.values[name], value)
	}
	return a, nil
}

func (a *args) str(name, dflt string) string {
	if v, ok := a.values[name]; ok {
		return v[len(v)-1]
	}
	return dflt
}

func (a *args) has(name string) bool { _, ok := a.values[name]; return ok }

func (a *args) required(name string) string {
	if !a.has(name) {
		panic(usageError{"--" + name + " is required for " + a.command})
	}
	return a.str(name, "")
}

func (a *args) integer(name string, dflt int) int {
	if !a.has(name) {
		return dflt
	}
	v, err := strconv.Atoi(a.str(name, ""))
	if err != nil {
		panic(usageError{"--" + name + ": " + err.Error()})
	}
	return v
}

func (a *args) all(name string) []string { return a.values[name] }

// ---------------------------------------------------------------- JSON

// obj is a JSON object that keeps its keys in insertion order.
type obj struct {
	keys []string
	vals []interface{}
}

func newObj() *obj { return &obj{} }

func (o *obj) put(k string, v interface{}) *obj {
	for i, key := range o.keys {
		if key == k {
			o.vals[i] = v
			return o
		}
	}
	o.keys = append(o.keys, k)
	o.vals = append(o.vals, v)
	return o
}

func (o *obj) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, k := range o.keys {
		if i > 0 {
			b.WriteByte(',')
		}
		kb, _ := json.Marshal(k)
		b.Write(kb)
		b.WriteByte(':')
		v := o.vals[i]
		if f, ok := v.(float64); ok && (math.IsNaN(f) || math.IsInf(f, 0)) {
			v = nil
		}
		vb, err := marshal(v)
		if err != nil {
			return nil, err
		}
		b.Write(vb)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

func marshal(v interface{}) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimRight(b.Bytes(), "\n"), nil
}

func sortedMap(m map[string]string) *obj {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	o := newObj()
	for _, k := range keys {
		o.put(k, m[k])
	}
	return o
}

var outMu sync.Mutex

func emit(o *obj) {
	b, err := marshal(o)
	if err != nil {
		logf("json: %v", err)
		return
	}
	outMu.Lock()
	os.Stdout.Write(append(b, '\n'))
	outMu.Unlock()
}

// emitFor prints a line of a command; with --label L it carries "label": L.
func emitFor(a *args, o *obj) {
	if a.has("label") {
		o.put("label", a.str("label", ""))
	}
	emit(o)
}

func logf(format string, v ...interface{}) {
	fmt.Fprintf(os.Stderr, "[peer] "+format+"\n", v...)
}

// ---------------------------------------------------------------- helpers

func cpuSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return math.NaN()
	}
	tv := func(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }
	return tv(ru.Utime) + tv(ru.Stime)
}

func clientVersion() string {
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, dep := range info.Deps {
			if dep.Path == modulePath {
				return dep.Version
			}
		}
	}
	return "unknown"
}

func sinceStart() float64 { return time.Since(processStart).Seconds() }

// sinceProcessStart is the seconds since the kernel started the process (field 22 of
// /proc/self/stat, in clock ticks since boot, against /proc/uptime; ticks of 1/100 s),
// as for the other peers; since the program's start if /proc cannot tell.
func sinceProcessStart() float64 {
	stat, err1 := os.ReadFile("/proc/self/stat")
	uptime, err2 := os.ReadFile("/proc/uptime")
	if err1 == nil && err2 == nil {
		// The command name (field 2) is in parentheses and may hold spaces.
		rest := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
		up := strings.Fields(string(uptime))
		if len(rest) > 19 && len(up) > 0 {
			ticks, e1 := strconv.ParseFloat(rest[19], 64)
			now, e2 := strconv.ParseFloat(up[0], 64)
			if e1 == nil && e2 == nil {
				return now - ticks/100
			}
		}
	}
	return sinceStart()
}

// rssKiB is the process's resident memory now (VmRSS of /proc/self/status); -1 if unknown.
func rssKiB() int64 {
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(status), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			fields := strings.Fields(line)
			if len(fields) >= 2 {
				if n, err := strconv.ParseInt(fields[1], 10, 64); err == nil {
					return n
				}
			}
		}
	}
	return -1
}

type bodySpec struct {
	fixed []byte
	size  int
}

func newBodySpec(a *args) (*bodySpec, error) {
	switch {
	case a.has("body-hex"):
		b, err := hex.DecodeString(a.str("body-hex", ""))
		if err != nil {
			return nil, usageError{"--body-hex: " + err.Error()}
		}
		return &bodySpec{fixed: b, size: -1}, nil
	case a.has("body-file"):
		b, err := os.ReadFile(a.str("body-file", ""))
		if err != nil {
			return nil, err
		}
		return &bodySpec{fixed: b, size: -1}, nil
	case a.has("body-size"):
		return &bodySpec{size: a.integer("body-size", 0)}, nil
	}
	return &bodySpec{size: -1}, nil
}

// body of message index: the same rule as the Java peer (see README).
func (s *bodySpec) body(index int) []byte {
	if s.fixed != nil {
		return s.fixed
	}
	if s.size >= 0 {
		b := make([]byte, s.size)
		for j := range b {
			b[j] = byte(index + j)
		}
		return b
	}
	return []byte("msg-" + strconv.Itoa(index))
}

func buildMessage(a *args, spec *bodySpec, topic string, index int) *primitive.Message {
	m := primitive.NewMessage(topic, spec.body(index))
	if a.has("tag") {
		m.WithTag(a.str("tag", ""))
	}
	if a.has("keys") {
		m.WithKeys(strings.Split(a.str("keys", ""), ","))
	}
	for _, p := range a.all("prop") {
		eq := strings.IndexByte(p, '=')
		if eq <= 0 {
			panic(usageError{"--prop wants k=v: " + p})
		}
		m.WithProperty(p[:eq], p[eq+1:])
	}
	if level := a.integer("delay-level", 0); level > 0 {
		m.WithDelayTimeLevel(level)
	}
	if a.has("deliver-delay-ms") {
		d := a.integer("deliver-delay-ms", 0)
		m.WithDelayTimestamp(time.Now().Add(time.Duration(d) * time.Millisecond))
	}
	return m
}

func queueJSON(q *primitive.MessageQueue) *obj {
	o := newObj()
	if q != nil {
		o.put("topic", q.Topic).put("brokerName", q.BrokerName).put("queueId", q.QueueId)
	}
	return o
}

func sendJSON(index int, r *primitive.SendResult, bodyLen int) *obj {
	return newObj().put("index", index).put("msgId", r.MsgID).put("offsetMsgId", r.OffsetMsgID).
		put("queue", queueJSON(r.MessageQueue)).put("queueOffset", r.QueueOffset).
		put("status", sendStatus(r.Status)).put("bodyLength", bodyLen)
}

// sendStatus names a status the way the Java client does.
func sendStatus(s primitive.SendStatus) string {
	switch s {
	case primitive.SendOK:
		return "SEND_OK"
	case primitive.SendFlushDiskTimeout:
		return "FLUSH_DISK_TIMEOUT"
	case primitive.SendFlushSlaveTimeout:
		return "FLUSH_SLAVE_TIMEOUT"
	case primitive.SendSlaveNotAvailable:
		return "SLAVE_NOT_AVAILABLE"
	}
	return "UNKNOWN_ERROR(" + strconv.Itoa(int(s)) + ")"
}

func nullIfEmpty(s string) interface{} {
	if s == "" {
		return nil
	}
	return s
}

func messageJSON(m *primitive.MessageExt) *obj {
	o := newObj()
	brokerName := ""
	queueID := -1
	if m.Queue != nil {
		brokerName, queueID = m.Queue.BrokerName, m.Queue.QueueId
	}
	o.put("topic", m.Topic).put("tags", nullIfEmpty(m.GetTags())).put("keys", nullIfEmpty(m.GetKeys())).
		put("msgId", m.MsgId).put("offsetMsgId", m.OffsetMsgId).put("queueId", queueID).
		put("brokerName", brokerName).put("queueOffset", m.QueueOffset).
		put("commitLogOffset", m.CommitLogOffset).
		put("bodyHex", hex.EncodeToString(m.Body)).put("bodyLength", len(m.Body)).
		put("bodyCRC", m.BodyCRC).put("flag", m.Flag).put("sysFlag", m.SysFlag).
		put("storeSize", m.StoreSize).
		put("properties", sortedMap(m.GetProperties())).
		put("reconsumeTimes", m.ReconsumeTimes).put("bornTimestamp", m.BornTimestamp).
		put("storeTimestamp", m.StoreTimestamp).put("bornHost", m.BornHost).
		put("storeHost", m.StoreHost).put("transactionId", nullIfEmpty(m.TransactionId)).
		put("consumedAt", time.Now().UnixMilli())
	return o
}

var groupSeq int64

func defaultGroup(kind string) string {
	return fmt.Sprintf("interop_go_%s_%d_%d", kind, os.Getpid(), time.Now().UnixNano()%100000+atomic.AddInt64(&groupSeq, 1))
}

func nsResolver(a *args) primitive.NsResolver {
	return primitive.NewPassthroughResolver(strings.Split(a.required("namesrv"), ";"))
}

// keyedSelector sends a message to crc32(key) % len(queues), the Java peer's rule, when
// a key was registered for it; otherwise round-robin like the client's default.
type keyedSelector struct {
	mu       sync.Mutex
	keys     map[*primitive.Message]string
	fallback producer.QueueSelector
}

func newKeyedSelector() *keyedSelector {
	return &keyedSelector{keys: map[*primitive.Message]string{}, fallback: producer.NewRoundRobinQueueSelector()}
}

func (s *keyedSelector) set(m *primitive.Message, key string) {
	s.mu.Lock()
	s.keys[m] = key
	s.mu.Unlock()
}

func (s *keyedSelector) Select(m *primitive.Message, mqs []*primitive.MessageQueue, last string) *primitive.MessageQueue {
	s.mu.Lock()
	key, ok := s.keys[m]
	s.mu.Unlock()
	if !ok || len(mqs) == 0 {
		return s.fallback.Select(m, mqs, last)
	}
	return mqs[crc32.ChecksumIEEE([]byte(key))%uint32(len(mqs))]
}

func producerOptions(a *args, group string, selector producer.QueueSelector) []producer.Option {
	opts := []producer.Option{
		producer.WithNsResolver(nsResolver(a)),
		producer.WithGroupName(group),
		producer.WithRetry(2),
		producer.WithSendMsgTimeout(time.Duration(a.integer("send-timeout-ms", 30000)) * time.Millisecond),
	}
	if a.has("instance") {
		opts = append(opts, producer.WithInstanceName(a.str("instance", "")))
	}
	if selector != nil {
		opts = append(opts, producer.WithQueueSelector(selector))
	}
	return opts
}

// ---------------------------------------------------------------- produce

func produce(a *args) (int, error) {
	topic := a.required("topic")
	count := a.integer("count", 1)
	mode := a.str("mode", "plain")
	spec, err := newBodySpec(a)
	if err != nil {
		return 3, err
	}
	if mode == "transaction" {
		return produceTransaction(a, topic, count, spec)
	}
	selector := newKeyedSelector()
	p, err := rocketmq.NewProducer(producerOptions(a, a.str("group", defaultGroup("producer")), selector)...)
	if err != nil {
		return 1, err
	}
	if err := p.Start(); err != nil {
		return 1, err
	}
	defer p.Shutdown()
	ctx := context.Background()
	switch mode {
	case "plain", "delay":
		for i := 0; i < count; i++ {
			m := buildMessage(a, spec, topic, i)
			r, err := p.SendSync(ctx, m)
			if err != nil {
				return 1, err
			}
			emitFor(a, sendJSON(i, r, len(m.Body)))
		}
	case "oneway":
		for i := 0; i < count; i++ {
			m := buildMessage(a, spec, topic, i)
			if err := p.SendOneWay(ctx, m); err != nil {
				return 1, err
			}
			emitFor(a, newObj().put("index", i).put("msgId", nullIfEmpty(m.GetProperty(primitive.PropertyUniqueClientMessageIdKeyIndex))).
				put("status", "ONEWAY").put("bodyLength", len(m.Body)))
		}
	case "ordered":
		keys := strings.Split(a.str("sharding-key", "key"), ",")
		for i := 0; i < count; i++ {
			m := buildMessage(a, spec, topic, i)
			key := keys[i%len(keys)]
			selector.set(m, key)
			r, err := p.SendSync(ctx, m)
			if err != nil {
				return 1, err
			}
			emitFor(a, sendJSON(i, r, len(m.Body)).put("shardingKey", key))
		}
	case "batch":
		batch := a.integer("batch", count)
		for start := 0; start < count; start += batch {
			var msgs []*primitive.Message
			for i := start; i < count && i < start+batch; i++ {
				msgs = append(msgs, buildMessage(a, spec, topic, i))
			}
			r, err := p.SendSync(ctx, msgs...)
			if err != nil {
				return 1, err
			}
			ids := strings.Split(r.MsgID, ",")
			offIDs := strings.Split(r.OffsetMsgID, ",")
			for k, m := range msgs {
				o := sendJSON(start+k, r, len(m.Body)).put("queueOffset", r.QueueOffset+int64(k))
				// this client's batch result has no ids (it reads them from the batch
				// wrapper): take each message's own UNIQ_KEY
				id := m.GetProperty(primitive.PropertyUniqueClientMessageIdKeyIndex)
				if id == "" {
					o.put("msgId", pick(ids, k))
				} else {
					o.put("msgId", id)
				}
				o.put("offsetMsgId", pick(offIDs, k))
				emitFor(a, o)
			}
		}
	case "async":
		window := make(chan struct{}, a.integer("inflight", 64))
		lines := make([]*obj, count)
		var wg sync.WaitGroup
		var errorsSeen int32
		for i := 0; i < count; i++ {
			index := i
			m := buildMessage(a, spec, topic, i)
			window <- struct{}{}
			wg.Add(1)
			err := p.SendAsync(ctx, func(_ context.Context, r *primitive.SendResult, err error) {
				if err != nil {
					atomic.AddInt32(&errorsSeen, 1)
					lines[index] = newObj().put("index", index).put("error", err.Error())
				} else {
					lines[index] = sendJSON(index, r, len(m.Body))
				}
				<-window
				wg.Done()
			}, m)
			if err != nil {
				atomic.AddInt32(&errorsSeen, 1)
				lines[index] = newObj().put("index", index).put("error", err.Error())
				<-window
				wg.Done()
			}
		}
		wg.Wait()
		for _, o := range lines {
			emitFor(a, o)
		}
		if errorsSeen > 0 {
			return 1, nil
		}
	default:
		return 3, usageError{"unknown --mode " + mode}
	}
	return 0, nil
}

func pick(s []string, i int) interface{} {
	if i < len(s) && s[i] != "" {
		return s[i]
	}
	return nil
}

type txListener struct {
	local, onCheck primitive.LocalTransactionState
	mu             sync.Mutex
	checks         map[string]int
}

func (l *txListener) ExecuteLocalTransaction(*primitive.Message) primitive.LocalTransactionState {
	return l.local
}

func (l *txListener) CheckLocalTransaction(m *primitive.MessageExt) primitive.LocalTransactionState {
	id := m.GetProperty(primitive.PropertyUniqueClientMessageIdKeyIndex)
	if id == "" {
		id = m.MsgId
	}
	l.mu.Lock()
	l.checks[id]++
	l.mu.Unlock()
	return l.onCheck
}

func (l *txListener) checked(id string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.checks[id]
}

func txStateName(s primitive.LocalTransactionState) string {
	switch s {
	case primitive.CommitMessageState:
		return "COMMIT_MESSAGE"
	case primitive.RollbackMessageState:
		return "ROLLBACK_MESSAGE"
	case primitive.UnkonwnState:
		return "UNKNOW"
	}
	return strconv.Itoa(int(s))
}

func produceTransaction(a *args, topic string, count int, spec *bodySpec) (int, error) {
	l := &txListener{checks: map[string]int{}}
	switch state := a.str("tx-state", "commit"); state {
	case "commit":
		l.local, l.onCheck = primitive.CommitMessageState, primitive.CommitMessageState
	case "rollback":
		l.local, l.onCheck = primitive.RollbackMessageState, primitive.RollbackMessageState
	case "unknown-then-commit":
		l.local, l.onCheck = primitive.UnkonwnState, primitive.CommitMessageState
	case "unknown-then-rollback":
		l.local, l.onCheck = primitive.UnkonwnState, primitive.RollbackMessageState
	default:
		return 3, usageError{"unknown --tx-state " + state}
	}
	p, err := rocketmq.NewTransactionProducer(l, producerOptions(a, a.str("group", defaultGroup("tx")), nil)...)
	if err != nil {
		return 1, err
	}
	if err := p.Start(); err != nil {
		return 1, err
	}
	defer p.Shutdown()
	var lines []*obj
	var ids []string
	for i := 0; i < count; i++ {
		m := buildMessage(a, spec, topic, i)
		r, err := p.SendMessageInTransaction(context.Background(), m)
		if err != nil {
			return 1, err
		}
		o := sendJSON(i, r.SendResult, len(m.Body)).put("transactionId", nullIfEmpty(r.TransactionID)).
			put("localState", txStateName(r.State))
		lines = append(lines, o)
		ids = append(ids, r.MsgID)
	}
	rc := 0
	if l.local == primitive.UnkonwnState {
		deadline := time.Now().Add(time.Duration(a.integer("timeout-sec", 60)) * time.Second)
		allChecked := func() bool {
			for _, id := range ids {
				if l.checked(id) == 0 {
					return false
				}
			}
			return true
		}
		for time.Now().Before(deadline) && !allChecked() {
			time.Sleep(50 * time.Millisecond)
		}
		if !allChecked() {
			logf("timed out waiting for transaction check-backs")
			rc = 2
		}
		time.Sleep(time.Second) // the check answer is sent after the listener returns
	}
	for i, o := range lines {
		n := l.checked(ids[i])
		o.put("checkTimes", n)
		if n > 0 {
			o.put("checkState", txStateName(l.onCheck))
		} else {
			o.put("checkState", nil)
		}
		emitFor(a, o)
	}
	return rc, nil
}

// ---------------------------------------------------------------- consume

func newConsumer(a *args, group string) (rocketmq.PushConsumer, error) {
	opts := []consumer.Option{
		consumer.WithNsResolver(nsResolver(a)),
		consumer.WithGroupName(group),
	}
	switch a.str("from", "first") {
	case "first":
		opts = append(opts, consumer.WithConsumeFromWhere(consumer.ConsumeFromFirstOffset))
	case "last":
		opts = append(opts, consumer.WithConsumeFromWhere(consumer.ConsumeFromLastOffset))
	default:
		return nil, usageError{"--from first|last"}
	}
	if a.flags["orderly"] {
		opts = append(opts, consumer.WithConsumerOrder(true))
	}
	if a.flags["broadcast"] {
		opts = append(opts, consumer.WithConsumerModel(consumer.BroadCasting))
	}
	if a.has("instance") {
		opts = append(opts, consumer.WithInstance(a.str("instance", "")))
	}
	if n := a.integer("pull-batch", 0); n > 0 {
		opts = append(opts, consumer.WithPullBatchSize(int32(n)))
	}
	if n := a.integer("threads", 0); n > 0 {
		opts = append(opts, consumer.WithConsumeGoroutineNums(n))
	}
	if n := a.integer("consume-batch", 0); n > 0 {
		opts = append(opts, consumer.WithConsumeMessageBatchMaxSize(n))
	}
	if a.has("max-reconsume-times") {
		opts = append(opts, consumer.WithMaxReconsumeTimes(int32(a.integer("max-reconsume-times", 16))))
	}
	return rocketmq.NewPushConsumer(opts...)
}

func selector(a *args) consumer.MessageSelector {
	if a.flags["sql"] {
		return consumer.MessageSelector{Type: consumer.SQL92, Expression: a.str("expression", "TRUE")}
	}
	return consumer.MessageSelector{Type: consumer.TAG, Expression: a.str("expression", "*")}
}

func signalReady(a *args) {
	logf("READY")
	if f := a.str("ready-file", ""); f != "" {
		os.WriteFile(f, []byte("ready\n"), 0o644)
	}
}

// waitFor waits for done, the file named by --stop-file, the timeout or SIGTERM/SIGINT;
// true when done or stopped by the file.
func waitFor(a *args, done <-chan struct{}, timeout time.Duration) bool {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sig)
	var poll <-chan time.Time
	stop := a.str("stop-file", "")
	if stop != "" {
		ticker := time.NewTicker(100 * time.Millisecond)
		defer ticker.Stop()
		poll = ticker.C
	}
	expired := time.After(timeout)
	for {
		select {
		case <-done:
			return true
		case <-poll:
			if _, err := os.Stat(stop); err == nil {
				return true
			}
		case <-expired:
			return false
		case <-sig:
			return false
		}
	}
}

type counter struct {
	left int64
	done chan struct{}
	once sync.Once
}

func newCounter(n int) *counter {
	c := &counter{left: int64(n), done: make(chan struct{})}
	if n <= 0 {
		c.left = math.MaxInt64
	}
	return c
}

func (c *counter) add(n int) {
	if atomic.AddInt64(&c.left, -int64(n)) <= 0 {
		c.once.Do(func() { close(c.done) })
	}
}

func consume(a *args) (int, error) {
	topic := a.required("topic")
	group := a.required("group")
	count := a.integer("count", 1)
	timeout := time.Duration(a.integer("timeout-sec", 60)) * time.Second
	failTimes := int32(a.integer("fail-times", 0))
	c, err := newConsumer(a, group)
	if err != nil {
		return 1, err
	}
	cnt := newCounter(count)
	orderly := a.flags["orderly"]
	err = c.Subscribe(topic, selector(a), func(ctx context.Context, msgs ...*primitive.MessageExt) (consumer.ConsumeResult, error) {
		fail := false
		for _, m := range msgs {
			fail = fail || m.ReconsumeTimes < failTimes
		}
		result, name := consumer.ConsumeSuccess, "SUCCESS"
		if fail && orderly {
			result, name = consumer.SuspendCurrentQueueAMoment, "SUSPEND_CURRENT_QUEUE_A_MOMENT"
		} else if fail {
			result, name = consumer.ConsumeRetryLater, "RECONSUME_LATER"
		}
		for _, m := range msgs {
			emitFor(a, messageJSON(m).put("consumeResult", name))
		}
		if !fail {
			cnt.add(len(msgs))
		}
		return result, nil
	})
	if err != nil {
		return 1, err
	}
	if err := c.Start(); err != nil {
		return 1, err
	}
	signalReady(a)
	finished := waitFor(a, cnt.done, timeout)
	c.Shutdown()
	if count <= 0 {
		return 0, nil
	}
	if !finished {
		logf("timed out with %d of %d messages", int64(count)-atomic.LoadInt64(&cnt.left), count)
		return 2, nil
	}
	return 0, nil
}

// ---------------------------------------------------------------- request / reply

func reply(a *args) (int, error) {
	topic := a.required("topic")
	group := a.required("group")
	count := a.integer("count", 1)
	timeout := time.Duration(a.integer("timeout-sec", 60)) * time.Second
	prefix := []byte(a.str("reply-prefix", "reply:"))
	p, err := rocketmq.NewProducer(producerOptions(a, a.str("producer-group", defaultGroup("replier")), nil)...)
	if err != nil {
		return 1, err
	}
	if err := p.Start(); err != nil {
		return 1, err
	}
	defer p.Shutdown()
	c, err := newConsumer(a, group)
	if err != nil {
		return 1, err
	}
	cnt := newCounter(count)
	err = c.Subscribe(topic, selector(a), func(ctx context.Context, msgs ...*primitive.MessageExt) (consumer.ConsumeResult, error) {
		for _, m := range msgs {
			body := append(append([]byte{}, prefix...), m.Body...)
			o := messageJSON(m)
			r, err := consumer.CreateReplyMessage(m, body)
			if err == nil {
				// CreateReplyMessage (this client version) parses the body as properties and
				// leaves the reply body empty: set it as the Java client does.
				r.Body = body
				var res *primitive.SendResult
				res, err = p.SendSync(context.Background(), r)
				if err == nil {
					o.put("replyStatus", sendStatus(res.Status)).put("replyMsgId", res.MsgID).put("replyTopic", r.Topic)
				}
			}
			if err != nil {
				o.put("replyError", err.Error())
			}
			emitFor(a, o)
		}
		cnt.add(len(msgs))
		return consumer.ConsumeSuccess, nil
	})
	if err != nil {
		return 1, err
	}
	if err := c.Start(); err != nil {
		return 1, err
	}
	signalReady(a)
	finished := waitFor(a, cnt.done, timeout)
	c.Shutdown()
	if count > 0 && !finished {
		return 2, nil
	}
	return 0, nil
}

func request(a *args) (int, error) {
	topic := a.required("topic")
	count := a.integer("count", 1)
	timeout := time.Duration(a.integer("timeout-ms", 10000)) * time.Millisecond
	spec, err := newBodySpec(a)
	if err != nil {
		return 3, err
	}
	p, err := rocketmq.NewProducer(producerOptions(a, a.str("group", defaultGroup("requester")), nil)...)
	if err != nil {
		return 1, err
	}
	if err := p.Start(); err != nil {
		return 1, err
	}
	defer p.Shutdown()
	rc := 0
	for i := 0; i < count; i++ {
		m := buildMessage(a, spec, topic, i)
		t0 := time.Now()
		o := newObj().put("index", i)
		r, err := p.Request(context.Background(), timeout, m)
		if err != nil {
			o.put("error", err.Error())
			rc = 1
			if strings.Contains(strings.ToLower(err.Error()), "timeout") {
				rc = 2
			}
		} else {
			o.put("requestMsgId", nullIfEmpty(m.GetProperty(primitive.PropertyUniqueClientMessageIdKeyIndex))).
				put("topic", r.Topic).put("tags", nullIfEmpty(r.GetTags())).put("keys", nullIfEmpty(r.GetKeys())).
				put("bodyHex", hex.EncodeToString(r.Body)).put("bodyLength", len(r.Body)).
				put("properties", sortedMap(r.GetProperties())).
				put("correlationId", nullIfEmpty(r.GetProperty(primitive.PropertyCorrelationID))).
				put("rttMs", float64(time.Since(t0).Microseconds())/1000)
		}
		emitFor(a, o)
	}
	return rc, nil
}

// ---------------------------------------------------------------- benchmarks

func percentile(sorted []time.Duration, q float64) float64 {
	if len(sorted) == 0 {
		return math.NaN()
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	if i < 0 {
		i = 0
	}
	if i >= len(sorted) {
		i = len(sorted) - 1
	}
	return float64(sorted[i].Nanoseconds()) / 1e6
}

func benchProduce(a *args) (int, error) {
	topic := a.required("topic")
	count := a.integer("count", 10000)
	size := a.integer("size", 1024)
	mode := a.str("mode", "sync")
	inflight := a.integer("inflight", 16)
	batch := a.integer("batch", 32)
	warmup := a.integer("warmup", 0)
	// --mode spread: sequential sends over --topics topics <topic>_0.. for --seconds
	seconds := a.integer("seconds", 60)
	topics := []string{topic}
	if mode == "spread" {
		topics = make([]string, a.integer("topics", 1))
		for t := range topics {
			topics[t] = fmt.Sprintf("%s_%d", topic, t)
		}
	}
	var startEpochMs int64
	body := make([]byte, size)
	if a.flags["random"] {
		// incompressible: the same bytes in every run (a seeded generator)
		rand.New(rand.NewSource(int64(size))).Read(body)
	} else {
		for j := range body {
			body[j] = byte('a' + j%26)
		}
	}
	p, err := rocketmq.NewProducer(producerOptions(a, a.str("group", defaultGroup("bench")), nil)...)
	if err != nil {
		return 1, err
	}
	if err := p.Start(); err != nil {
		return 1, err
	}
	startup := sinceStart()
	ctx := context.Background()
	firstAck := math.NaN()
	for i := 0; i < warmup || i < 1; i++ {
		if _, err := p.SendSync(ctx, primitive.NewMessage(topics[i%len(topics)], body)); err != nil {
			logf("warm-up send: %v", err)
		}
		if i == 0 {
			firstAck = sinceProcessStart()
		}
	}
	ops := count
	if mode == "batch" {
		ops = (count + batch - 1) / batch
	} else if mode == "spread" {
		ops = 0
	}
	lat := make([]time.Duration, ops)
	var errs int64
	cpu0 := cpuSeconds()
	t0 := time.Now()
	switch mode {
	case "spread":
		startEpochMs = time.Now().UnixMilli()
		deadline := t0.Add(time.Duration(seconds) * time.Second)
		sent := 0
		for time.Now().Before(deadline) {
			if _, err := p.SendSync(ctx, primitive.NewMessage(topics[sent%len(topics)], body)); err != nil {
				errs++
			}
			sent++
		}
		count = sent
	case "sync":
		for i := 0; i < count; i++ {
			s := time.Now()
			if _, err := p.SendSync(ctx, primitive.NewMessage(topic, body)); err != nil {
				errs++
			}
			lat[i] = time.Since(s)
		}
	case "oneway":
		for i := 0; i < count; i++ {
			s := time.Now()
			if err := p.SendOneWay(ctx, primitive.NewMessage(topic, body)); err != nil {
				errs++
			}
			lat[i] = time.Since(s)
		}
	case "batch":
		for op := 0; op < ops; op++ {
			n := batch
			if rest := count - op*batch; rest < n {
				n = rest
			}
			msgs := make([]*primitive.Message, n)
			for k := range msgs {
				msgs[k] = primitive.NewMessage(topic, body)
			}
			s := time.Now()
			if _, err := p.SendSync(ctx, msgs...); err != nil {
				errs++
			}
			lat[op] = time.Since(s)
		}
	case "async":
		window := make(chan struct{}, inflight)
		var wg sync.WaitGroup
		for i := 0; i < count; i++ {
			idx := i
			window <- struct{}{}
			wg.Add(1)
			s := time.Now()
			err := p.SendAsync(ctx, func(_ context.Context, _ *primitive.SendResult, err error) {
				lat[idx] = time.Since(s)
				if err != nil {
					atomic.AddInt64(&errs, 1)
				}
				<-window
				wg.Done()
			}, primitive.NewMessage(topic, body))
			if err != nil {
				atomic.AddInt64(&errs, 1)
				<-window
				wg.Done()
			}
		}
		wg.Wait()
	default:
		return 3, usageError{"unknown bench --mode " + mode}
	}
	elapsed := time.Since(t0).Seconds()
	cpu := cpuSeconds() - cpu0
	rss := rssKiB()
	p.Shutdown()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	var sum time.Duration
	for _, l := range lat {
		sum += l
	}
	o := newObj().put("client", "go").put("clientVersion", clientVersion()).put("op", "bench-produce").
		put("mode", mode).put("count", count).put("size", size)
	if mode == "async" {
		o.put("inflight", inflight)
	}
	if mode == "batch" {
		o.put("batch", batch)
	}
	if mode == "spread" {
		o.put("topics", len(topics)).put("startEpochMs", startEpochMs).
			put("endEpochMs", startEpochMs+int64(elapsed*1000))
	}
	mean := math.NaN()
	if ops > 0 {
		mean = float64(sum.Nanoseconds()) / float64(ops) / 1e6
	}
	o.put("warmup", warmup).put("elapsedSec", elapsed).put("msgsPerSec", float64(count)/elapsed).
		put("p50Ms", percentile(lat, 0.50)).put("p99Ms", percentile(lat, 0.99)).put("meanMs", mean).
		put("cpuSec", cpu).put("cpuUsPerMsg", cpu*1e6/float64(count)).
		put("processCpuSec", cpuSeconds()).put("startupSec", startup).
		put("firstAckSec", firstAck).put("rssKiB", rss).put("errors", errs)
	emit(o)
	if errs > 0 {
		return 1, nil
	}
	return 0, nil
}

func benchConsume(a *args) (int, error) {
	topic := a.required("topic")
	group := a.required("group")
	count := a.integer("count", 10000)
	timeout := time.Duration(a.integer("timeout-sec", 300)) * time.Second
	c, err := newConsumer(a, group)
	if err != nil {
		return 1, err
	}
	cnt := newCounter(count)
	var received, nbytes int64
	var firstAt atomic.Value
	var cpuAtFirst atomic.Value
	var lastAtEpochMs int64
	err = c.Subscribe(topic, selector(a), func(ctx context.Context, msgs ...*primitive.MessageExt) (consumer.ConsumeResult, error) {
		if firstAt.Load() == nil {
			firstAt.CompareAndSwap(nil, time.Now())
			cpuAtFirst.CompareAndSwap(nil, cpuSeconds())
		}
		for now := time.Now().UnixMilli(); ; {
			last := atomic.LoadInt64(&lastAtEpochMs)
			if now <= last || atomic.CompareAndSwapInt64(&lastAtEpochMs, last, now) {
				break
			}
		}
		for _, m := range msgs {
			atomic.AddInt64(&nbytes, int64(len(m.Body)))
		}
		atomic.AddInt64(&received, int64(len(msgs)))
		cnt.add(len(msgs))
		return consumer.ConsumeSuccess, nil
	})
	if err != nil {
		return 1, err
	}
	cpu0 := cpuSeconds()
	t0 := time.Now()
	if err := c.Start(); err != nil {
		return 1, err
	}
	startup := sinceStart()
	finished := waitFor(a, cnt.done, timeout)
	t1 := time.Now()
	cpu1 := cpuSeconds()
	got := atomic.LoadInt64(&received)
	rss := rssKiB()
	c.Shutdown()
	elapsed := t1.Sub(t0).Seconds()
	fromFirst, cpuFirst, firstEpochMs, lastEpochMs := math.NaN(), math.NaN(), math.NaN(), math.NaN()
	if f, ok := firstAt.Load().(time.Time); ok {
		fromFirst = t1.Sub(f).Seconds()
		cpuFirst = (cpu1 - cpuAtFirst.Load().(float64)) * 1e6 / math.Max(1, float64(got))
		firstEpochMs = float64(f.UnixMilli())
		lastEpochMs = float64(atomic.LoadInt64(&lastAtEpochMs))
	}
	o := newObj().put("client", "go").put("clientVersion", clientVersion()).put("op", "bench-consume").
		put("count", count).put("received", got).put("bytes", atomic.LoadInt64(&nbytes)).
		put("elapsedSec", elapsed).put("msgsPerSec", float64(got)/elapsed).
		put("elapsedFromFirstSec", fromFirst).put("msgsPerSecFromFirst", float64(got)/fromFirst).
		put("cpuSec", cpu1-cpu0).put("cpuUsPerMsg", (cpu1-cpu0)*1e6/math.Max(1, float64(got))).
		put("cpuFromFirstUsPerMsg", cpuFirst).
		put("processCpuSec", cpuSeconds()).put("startupSec", startup).put("rssKiB", rss).
		put("firstAtEpochMs", firstEpochMs).put("lastAtEpochMs", lastEpochMs).
		put("timedOut", !finished)
	emit(o)
	if !finished {
		return 2, nil
	}
	return 0, nil
}

// ---------------------------------------------------------------- main

// execute runs one command line: a command, or "run" and its file of commands.
func execute(argv []string) (int, error) {
	if len(argv) > 0 && argv[0] == "run" {
		return runFile(argv)
	}
	return dispatch(argv, nil)
}

// dispatch runs a command; prepare, when given, may adjust the parsed options first.
func dispatch(argv []string, prepare func(a *args)) (rc int, err error) {
	defer func() {
		if r := recover(); r != nil {
			if u, ok := r.(usageError); ok {
				rc, err = 3, u
				return
			}
			panic(r)
		}
	}()
	a, err := parseArgs(argv)
	if err != nil {
		return 3, err
	}
	if prepare != nil {
		prepare(a)
	}
	switch a.command {
	case "produce":
		return produce(a)
	case "consume":
		return consume(a)
	case "reply":
		return reply(a)
	case "request":
		return request(a)
	case "bench-produce":
		return benchProduce(a)
	case "bench-consume":
		return benchConsume(a)
	case "version":
		emit(newObj().put("client", "go").put("clientVersion", clientVersion()).
			put("startupSec", sinceStart()).put("processCpuSec", cpuSeconds()))
		return 0, nil
	}
	return 3, usageError{"unknown command " + a.command}
}

// ---------------------------------------------------------------- run

// runFile runs the commands listed in --file in this one process (see README): one command
// per line, its arguments separated by tabs; blank lines and lines starting with '#' are
// skipped. A line whose first field is "&" runs in the background; the others run one after
// another, in file order. The run's other options go before each command's own (which
// therefore win). After each command, a line {"event":"step",...} gives its exit code and
// error. Exit code: the highest of the commands'.
func runFile(argv []string) (int, error) {
	file := ""
	var common []string
	for i := 1; i < len(argv); i++ {
		switch {
		case argv[i] == "--file" && i+1 < len(argv):
			i++
			file = argv[i]
		case strings.HasPrefix(argv[i], "--file="):
			file = argv[i][len("--file="):]
		default:
			common = append(common, argv[i])
		}
	}
	if file == "" {
		return 3, usageError{"--file is required for run"}
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return 1, err
	}
	var worst int32
	var wg sync.WaitGroup
	step := 0
	for _, line := range strings.Split(string(data), "\n") {
		if strings.TrimSpace(line) == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Split(line, "\t")
		background := fields[0] == "&"
		if background {
			fields = fields[1:]
		}
		if len(fields) == 0 || fields[0] == "run" {
			return 3, usageError{"run: bad line: " + line}
		}
		stepArgv := append(append([]string{fields[0]}, common...), fields[1:]...)
		index := step
		step++
		if background {
			wg.Add(1)
			go func() {
				defer wg.Done()
				runStep(index, stepArgv, true, &worst)
			}()
		} else {
			runStep(index, stepArgv, false, &worst)
		}
	}
	wg.Wait()
	return int(atomic.LoadInt32(&worst)), nil
}

func runStep(index int, argv []string, background bool, worst *int32) {
	o := newObj().put("event", "step").put("step", index).put("command", argv[0]).
		put("label", nil).put("background", background)
	rc, err := dispatch(argv, func(a *args) {
		if a.has("label") {
			o.put("label", a.str("label", ""))
		}
		// One client instance per command: the library shares a client between all
		// producers and consumers of one instance name, and a shared client hands
		// transaction check-backs to the first of them only.
		base := a.str("instance", strconv.Itoa(os.Getpid()))
		a.values["instance"] = []string{fmt.Sprintf("%s-step%d", base, index)}
	})
	if err != nil && rc == 0 {
		rc = 1
	}
	o.put("rc", rc)
	if err != nil {
		o.put("error", err.Error())
		logf("step %d (%s) failed: %v", index, argv[0], err)
	} else {
		o.put("error", nil)
	}
	emit(o)
	for {
		old := atomic.LoadInt32(worst)
		if int32(rc) <= old || atomic.CompareAndSwapInt32(worst, old, int32(rc)) {
			break
		}
	}
}

func main() {
	level := os.Getenv("ROCKETMQ_GO_LOG_LEVEL")
	if level == "" {
		level = "error"
	}
	rlog.SetLogLevel(level)
	rc, err := execute(os.Args[1:])
	if err != nil {
		var u usageError
		if errors.As(err, &u) {
			fmt.Fprintln(os.Stderr, "usage: "+err.Error())
			fmt.Fprintln(os.Stderr, "commands: produce consume reply request run bench-produce bench-consume version (see interop/README.md)")
		} else {
			fmt.Fprintln(os.Stderr, "error: "+err.Error())
		}
		if rc == 0 {
			rc = 1
		}
	}
	os.Exit(rc)
}
