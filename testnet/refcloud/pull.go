package refcloud

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"

	"github.com/ipfs/boxo/blockservice"
	"github.com/ipfs/boxo/ipld/merkledag"
	uio "github.com/ipfs/boxo/ipld/unixfs/io"
	"github.com/ipfs/boxo/verifcid"
	"github.com/ipfs/go-cid"
	carv2 "github.com/ipld/go-car/v2"
	carbs "github.com/ipld/go-car/v2/blockstore"
)

// errVerify: the gateway's answer does not match the CID asked for.
var errVerify = errors.New("appliance does not match its CID")

// pull fetches the appliance at url (a gateway's /ipfs/<cid>) as a CAR,
// checks every block against its CID (hash functions from boxo's
// allowlist), then reads the UnixFS file out of the verified blocks from
// root and writes it to dst. The file's bytes are thus exactly those root
// names: a gateway that sends other bytes, or leaves blocks out, fails the
// pull. size is the expected size; the CAR may be up to 1/16 larger (DAG
// nodes and framing) plus 1 MiB. carPath is a scratch file.
func pull(ctx context.Context, hc *http.Client, url string, root cid.Cid, size uint64, dst, carPath string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"?format=car", nil)
	if err != nil {
		return fmt.Errorf("appliance URL %q: %v", url, err)
	}
	req.Header.Set("Accept", "application/vnd.ipld.car")
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("pull %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("pull %s: %s: %s", url, resp.Status, b)
	}
	f, err := os.OpenFile(carPath, os.O_CREATE|os.O_TRUNC|os.O_RDWR, 0o600)
	if err != nil {
		return err
	}
	defer os.Remove(carPath)
	defer f.Close()
	limit := int64(size + size/16 + 1<<20)
	lr := &io.LimitedReader{R: resp.Body, N: limit + 1}
	tee := io.TeeReader(lr, f)
	br, err := carv2.NewBlockReader(tee)
	if err != nil {
		return fmt.Errorf("pull %s: not a CAR: %v: %w", url, err, errVerify)
	}
	if !slices.ContainsFunc(br.Roots, root.Equals) {
		return fmt.Errorf("pull %s: the CAR's roots %v do not include %s: %w", url, br.Roots, root, errVerify)
	}
	blocks := 0
	for {
		b, err := br.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			if lr.N <= 0 {
				return fmt.Errorf("pull %s: more than %d bytes for an appliance of %d: %w", url, limit, size, errVerify)
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("pull %s: block %d: %v: %w", url, blocks, err, errVerify)
		}
		if err := verifcid.ValidateCid(verifcid.DefaultAllowlist, b.Cid()); err != nil {
			return fmt.Errorf("pull %s: block %s: %v: %w", url, b.Cid(), err, errVerify)
		}
		blocks++
	}
	if lr.N <= 0 {
		return fmt.Errorf("pull %s: more than %d bytes for an appliance of %d: %w", url, limit, size, errVerify)
	}
	if err := f.Sync(); err != nil {
		return err
	}

	// Every block in the file hashes to its CID; read the file from root.
	bs, err := carbs.OpenReadOnly(carPath, carv2.UseWholeCIDs(true))
	if err != nil {
		return fmt.Errorf("pull %s: index the CAR: %v: %w", url, err, errVerify)
	}
	defer bs.Close()
	dag := merkledag.NewDAGService(blockservice.New(bs, nil))
	nd, err := dag.Get(ctx, root)
	if err != nil {
		return fmt.Errorf("pull %s: root %s not in the CAR: %v: %w", url, root, err, errVerify)
	}
	r, err := uio.NewDagReader(ctx, nd, dag)
	if err != nil {
		return fmt.Errorf("pull %s: %s is not a UnixFS file: %v: %w", url, root, err, errVerify)
	}
	if r.Size() != size {
		return fmt.Errorf("pull %s: the DAG holds %d bytes, the request says %d: %w", url, r.Size(), size, errVerify)
	}
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o700)
	if err != nil {
		return err
	}
	n, err := io.Copy(out, r)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("pull %s: read the file from the DAG (a block missing?): %v: %w", url, err, errVerify)
	}
	if uint64(n) != size {
		return fmt.Errorf("pull %s: read %d bytes, want %d: %w", url, n, size, errVerify)
	}
	return nil
}
