package directory

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"stunnel/conf"
)

// TLSConfig builds the client TLS settings of a [directory] table: nil
// when every endpoint is plain http (loopback only, as conf enforces).
func TLSConfig(d *conf.Directory) (*tls.Config, error) {
	https := false
	for _, e := range d.Endpoints {
		if len(e) >= 8 && e[:8] == "https://" {
			https = true
		}
	}
	if !https && d.CAFile == "" && d.CertFile == "" {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if d.CAFile != "" {
		pem, err := os.ReadFile(d.CAFile)
		if err != nil {
			return nil, fmt.Errorf("[directory] ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("[directory] ca_file %s holds no PEM certificate", d.CAFile)
		}
		cfg.RootCAs = pool
	}
	if d.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(d.CertFile, d.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("[directory] cert_file/key_file: %v", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// DialWatcher makes an etcd client for a daemon's long-lived list-and-watch
// loops (the directory, the ticket ring): short dial timeouts and TCP
// keepalives, so a dead member is noticed and the loop moves on.
func DialWatcher(endpoints []string, tlsCfg *tls.Config) (*clientv3.Client, error) {
	if err := conf.CheckEtcdSchemes(endpoints); err != nil {
		return nil, fmt.Errorf("etcd endpoints %v", err) // conf refuses them first, with the line
	}
	return clientv3.New(clientv3.Config{
		Endpoints:            endpoints,
		TLS:                  tlsCfg,
		DialTimeout:          2 * time.Second,
		DialKeepAliveTime:    5 * time.Second,
		DialKeepAliveTimeout: 2 * time.Second,
		Logger:               zap.NewNop(),
	})
}

// Dial makes an etcd client for one-shot commands (`stunnel directory`).
func Dial(endpoints []string, tlsCfg *tls.Config) (*clientv3.Client, error) {
	if err := conf.CheckEtcdSchemes(endpoints); err != nil {
		return nil, fmt.Errorf("etcd endpoints %v", err) // conf refuses them first, with the line
	}
	return clientv3.New(clientv3.Config{
		Endpoints:   endpoints,
		TLS:         tlsCfg,
		DialTimeout: 3 * time.Second,
		Logger:      zap.NewNop(),
	})
}

// Put writes p's record, validated first (EncodeRecord).
func Put(ctx context.Context, cli *clientv3.Client, prefix string, p conf.Peer) error {
	b, err := EncodeRecord(p)
	if err != nil {
		return err
	}
	_, err = cli.Put(ctx, PeerKey(prefix, p.ID), string(b))
	return err
}

// ErrNoRecord is returned by Delete for an ID with no record.
var ErrNoRecord = errors.New("no such record")

// Delete removes id's record.
func Delete(ctx context.Context, cli *clientv3.Client, prefix, id string) error {
	if err := CheckRecordID(id); err != nil {
		return err // another fleet's key, if anything
	}
	resp, err := cli.Delete(ctx, PeerKey(prefix, id))
	if err != nil {
		return err
	}
	if resp.Deleted == 0 {
		return ErrNoRecord
	}
	return nil
}

// Entry is one record as List finds it: parsed, or why it is malformed.
type Entry struct {
	Key  string
	ID   string
	Peer conf.Peer
	Err  error // non-nil: the daemon skips this record
}

// List reads every record under prefix, in key order, at one revision.
func List(ctx context.Context, cli *clientv3.Client, prefix string) ([]Entry, int64, error) {
	resp, err := cli.Get(ctx, prefix+PeersDir, clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))
	if err != nil {
		return nil, 0, err
	}
	var out []Entry
	for _, kv := range resp.Kvs {
		key := string(kv.Key)
		id, ok := PeerIDFromKey(prefix, key)
		if !ok {
			if deeperKey(prefix, key) {
				out = append(out, Entry{Key: key, ID: strings.TrimPrefix(key, prefix+PeersDir), Err: errDeeperKey})
			}
			continue
		}
		p, err := ParseRecord(id, kv.Value)
		out = append(out, Entry{Key: key, ID: id, Peer: p, Err: err})
	}
	return out, resp.Header.Revision, nil
}
